"""When failing windows become one retrain request, and where it goes."""

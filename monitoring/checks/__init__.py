"""Checks per event-time window of the prediction log against the champion's reference."""

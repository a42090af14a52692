"""bento_service"""

"""Turning uploaded files into chunks of text for vector stores."""

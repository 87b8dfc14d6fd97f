"""Tailor: a conversational recommender that only ever recommends catalog items."""

__version__ = "0.1.0"

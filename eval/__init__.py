"""Offline evaluation suite (not built yet; see the issue tracker)."""

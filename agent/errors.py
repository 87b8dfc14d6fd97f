"""Errors that carry a message a user can act on.

Library code raises these; only the edges (CLI, UI, API) catch them and
print the message instead of a stack trace.
"""


class TailorError(Exception):
    """Base class for every error Tailor reports to a user."""


class ConfigError(TailorError):
    """A setting is missing or invalid."""


class AssetError(TailorError):
    """A model, dataset or index is missing, corrupt or cannot be fetched."""


class InputError(TailorError):
    """The user's input cannot be used (empty, too long, not text)."""


class BackendError(TailorError):
    """The language model backend failed or timed out."""

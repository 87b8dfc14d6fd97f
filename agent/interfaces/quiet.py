"""Library chatter kept out of the user's terminal, set up before the commands import
the libraries (``tailor``'s first step)."""

from __future__ import annotations

import logging
import os


def quiet_libraries(settings) -> None:
    """Keep library chatter out of the user's terminal; never phone home."""
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    local = os.path.isdir(os.path.expanduser(settings.model))
    if local or settings.model == "smollm2-135m-instruct":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never reach for a hub
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


class NoKernelsWarning(logging.Filter):
    """bitsandbytes warns on import (peft and transformers import it) that the optional
    ``kernels`` package is missing: noise the user can do nothing about. Only that record
    is dropped; every other bitsandbytes warning still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No module named 'kernels'" not in record.getMessage()


def silence_bitsandbytes_kernels() -> None:
    """Installed before anything can import bitsandbytes (peft and transformers do)."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, NoKernelsWarning) for f in logger.filters):
        logger.addFilter(NoKernelsWarning())

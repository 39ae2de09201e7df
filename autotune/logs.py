"""Log records of libraries autotune imports that say nothing to its user, filtered out wherever autotune runs:
torchao's import (which transformers makes wherever torchao is installed) tries to load kernels built for other
GPUs and Python versions ("Failed to load ....so"), and torch notes, once per enum, that torchao registers it
the old way. Everything else those loggers say passes."""

from __future__ import annotations

import logging

# logger -> fragments of the messages dropped from it
NOISE = {"torchao": ("Failed to load ",),
         "torch.utils._pytree": ("is an Enum subclass and is now natively supported",)}


class DropNoise(logging.Filter):
    """Drops the records whose message holds one of `fragments`."""

    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def drop_library_noise() -> None:
    """Install the NOISE filters on their loggers (once; importing autotune does it)."""
    for name, fragments in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNoise) for f in logger.filters):
            logger.addFilter(DropNoise(fragments))

"""The errors minidet raises at its boundaries (files, user arguments, dataset records).

Each message names the offending file, record, field and value, so a user can fix the input
without reading a traceback.
"""
from __future__ import annotations


class MinidetError(Exception):
    """Base class of every error minidet raises on purpose."""


class DatasetError(MinidetError, ValueError):
    """A dataset file or record is malformed or inconsistent."""


class ConfigError(MinidetError, ValueError):
    """A user-supplied argument or configuration value is invalid."""


class CheckpointError(MinidetError, RuntimeError):
    """A checkpoint file cannot be loaded into this model or trainer."""


class NonFiniteLossError(MinidetError, FloatingPointError):
    """A loss component became NaN or infinite during training."""

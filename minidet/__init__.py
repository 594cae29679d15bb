"""minidet: object detection built piece by piece, in plain PyTorch, for learning.

Subpackages: :mod:`minidet.data`, :mod:`minidet.boxes`, :mod:`minidet.models`, :mod:`minidet.assigners`,
:mod:`minidet.losses`, :mod:`minidet.engine`, :mod:`minidet.viz`.
"""
from minidet.engine.experiment import fast_mode
from minidet.errors import CheckpointError, ConfigError, DatasetError, MinidetError, NonFiniteLossError

__version__ = "0.1.0"
__all__ = ["CheckpointError", "ConfigError", "DatasetError", "MinidetError", "NonFiniteLossError", "fast_mode", "__version__"]

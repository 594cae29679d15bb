"""minidet: object detection built piece by piece, in plain PyTorch, for learning.

Start with the README (``README.md`` in the repository: install, the command line, measured results) and the
book (``python -m book`` builds it; ``book/own_data.md`` covers your own COCO dataset). The lessons are
``lessons/01_*.ipynb`` ... ``lessons/08_*.ipynb``.

In your own project:

>>> import minidet
>>> det = minidet.load("runs/my_data/last.pt")      # a checkpoint written by `minidet train`
>>> det.predict("photo.jpg")                        # {"boxes", "scores", "labels", "names"} in the photo's pixels

Command line: ``minidet train``, ``minidet predict``, ``minidet eval``, ``minidet check-data`` (``minidet --help``).
Subpackages: :mod:`minidet.data`, :mod:`minidet.boxes`, :mod:`minidet.models`, :mod:`minidet.assigners`,
:mod:`minidet.samplers`, :mod:`minidet.losses`, :mod:`minidet.engine`, :mod:`minidet.viz`. The errors minidet
raises on bad input (``DatasetError``, ``ConfigError``, ``CheckpointError``, ...) live in :mod:`minidet.errors`
and are importable from here.
"""
from minidet.engine.experiment import fast_mode
from minidet.engine.predictor import Predictor, load
from minidet.errors import CheckpointError, ConfigError, DatasetError, MinidetError, NonFiniteLossError

__version__ = "0.1.0"
# What help(minidet) lists; the error classes stay importable (``from minidet import DatasetError``) without
# pydoc printing every inherited exception method.
__all__ = ["load", "Predictor", "fast_mode", "__version__"]

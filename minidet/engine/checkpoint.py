"""Checkpoints that survive crashes: written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict of tensors and Python primitives (no pickled classes), so loading it
cannot run code. Writing goes to a temporary file in the same folder, is flushed to disk, then renamed
over the target: a run killed mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from minidet.errors import CheckpointError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` to ``path`` (temporary file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing, truncated or foreign file raises
    :class:`CheckpointError` naming the path."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or not a minidet checkpoint): {exc}") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a minidet checkpoint (no 'model' entry)")
    return state


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a model state dict, turning key/shape mismatches into a :class:`CheckpointError` that says
    which checkpoint and which tensor do not fit (e.g. a checkpoint of another model or class count)."""
    own = model.state_dict()
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if bad or missing or unexpected:
        parts = []
        if bad:
            parts.append("shape mismatch " + ", ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in bad[:3]))
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        raise CheckpointError(f"{source} does not fit this model ({'; '.join(parts)}): was it saved from another model?")
    model.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    """Every random-number state a training step can touch (Python, torch CPU, torch CUDA)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved. The generators take CPU ``ByteTensor`` states only, so the
    states are copied to the CPU first: a checkpoint loaded with ``map_location="cuda"`` holds them on the GPU."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])

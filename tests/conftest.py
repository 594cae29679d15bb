"""Shared fixtures: a small shapes dataset generated once per test session."""
from __future__ import annotations

import pytest
import torch

from minidet.data import ShapesConfig, generate_shapes


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """16 training and 8 validation images of 128 px, as a dict of paths (see ``generate_shapes``)."""
    root = tmp_path_factory.mktemp("shapes")
    cfg = ShapesConfig(image_size=128, num_train=16, num_val=8, max_objects=5, seed=3)
    paths = generate_shapes(root, cfg, workers=1)
    paths["root"] = root
    return paths


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_shapes, tmp_path_factory):
    """``last.pt`` of a 3-iteration RetinaNet run (96 px input) on :func:`tiny_shapes`, via ``minidet train``."""
    from minidet.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(tiny_shapes["root"]), "--iters", "3", "--size", "96", "--batch", "4",
                 "--workers", "0", "--out", str(out), "--device", "cpu", "--no-eval"]) == 0
    return out / "last.pt"


@pytest.fixture
def cuda_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    if not torch.cuda.is_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def overfit():
    """``fit(model, images, targets, steps, lr=2e-3) -> (losses, last_out)``: AdamW steps on one batch,
    returning the total loss (sum of every ``loss_*`` entry) before each step and the last loss dict."""

    def fit(model, images, targets, steps, lr=2e-3):
        opt = torch.optim.AdamW(model.parameters(), lr)
        losses, out = [], None
        for _ in range(steps):
            out = model(images, targets)
            loss = sum(v for k, v in out.items() if k.startswith("loss_"))
            losses.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
        return losses, out

    return fit

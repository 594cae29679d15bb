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

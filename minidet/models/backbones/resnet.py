"""torchvision ResNets as detection backbones, built without downloading anything.

Weights, when wanted, come from a local file (``weights_path``): a state dict of a torchvision
ResNet (e.g. saved with ``torch.save(resnet50(weights=...).state_dict(), path)`` on a machine that has
them). Every tensor's shape is checked before it is copied, and the error names the offending key.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from minidet.errors import CheckpointError, ConfigError

_RESNETS = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}


def load_state_dict_checked(module: nn.Module, state: dict[str, Tensor], source: str, strict: bool = True) -> None:
    """Copy ``state`` into ``module`` after checking every key and shape; raise :class:`CheckpointError`
    naming ``source`` and the first mismatching key otherwise."""
    own = module.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"{source}: tensor {key!r} has shape {tuple(value.shape)}, model expects {tuple(own[key].shape)}")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{source}: does not match the model: missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def read_state_dict(path: str | Path, what: str = "backbone weights") -> dict[str, Tensor]:
    """The state dict saved at ``path`` (read with ``weights_only=True``, on the CPU); a missing file, or one
    that is truncated or not a dict of tensors, raises :class:`CheckpointError` naming ``what`` and ``path``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or not a torch file
        raise CheckpointError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{what} {path}: expected a state dict (name -> tensor), found {type(state).__name__}")
    return state


class ResNetBackbone(nn.Module):
    """ResNet-18/34/50 trunk returning ``c2..c5`` (strides 4, 8, 16, 32).

    Args:
        depth: 18, 34 or 50.
        weights_path: optional path to a torchvision ResNet state dict (``fc.*`` keys are ignored).
        frozen_bn: use :class:`torchvision.ops.FrozenBatchNorm2d` (the usual choice with pretrained weights
            and small batches); with ``False``, ordinary trainable batch norm (from-scratch training).
        trainable_layers: how many of ``layer4, layer3, layer2, layer1, stem`` train (5 = all).
    """

    def __init__(self, depth: int = 50, weights_path: str | Path | None = None, frozen_bn: bool = False, trainable_layers: int = 5) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ConfigError(f"ResNet depth must be one of {sorted(_RESNETS)}, got {depth}")
        if not 0 <= trainable_layers <= 5:
            raise ConfigError(f"trainable_layers must be in 0..5, got {trainable_layers}")
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        net = _RESNETS[depth](weights=None, norm_layer=norm)
        if weights_path is not None:
            state = {k: v for k, v in read_state_dict(weights_path).items() if not k.startswith("fc.")}
            net.fc = nn.Identity()
            load_state_dict_checked(net, state, str(weights_path))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        order = [self.layer4, self.layer3, self.layer2, self.layer1, self.stem]
        for i, part in enumerate(order):
            part.requires_grad_(i < trainable_layers)
        expansion = 4 if depth == 50 else 1
        self.out_channels = {"c2": 64 * expansion, "c3": 128 * expansion, "c4": 256 * expansion, "c5": 512 * expansion}
        self.strides = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x``: ``(B, 3, H, W)``. Returns ``{"c2": (B, C, H/4, W/4), ..., "c5": (B, C, H/32, W/32)}``."""
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return {"c2": c2, "c3": c3, "c4": c4, "c5": c5}

"""torchvision's RetinaNet and FCOS weights in minidet models (ResNet-50-FPN, P3-P7).

>>> state = torchvision.models.detection.fcos_resnet50_fpn(weights=...).state_dict()
>>> model = from_torchvision(state)            # an FCOS that gives torchvision's detections
>>> model = build_retinanet_like_torchvision(91); load_torchvision_state(model, "retinanet.pt")

The two libraries build the same networks from the same parts; a few choices differ, and the models
built here follow torchvision's so that a loaded model gives the same detections (tested):

* anchor sizes: torchvision truncates ``32 * 2^(k/3)`` to integers (32, 40, 50 on P3) and rounds the
  corners of its base anchors; minidet keeps the exact values (:class:`TorchvisionAnchorGenerator`).
* FCOS points: torchvision places them at ``(x * s, y * s)``, the corner of a cell (its one "anchor" per
  cell is an ``s x s`` box there, and distances are divided by its size ``s``); minidet's default is the
  cell centre ``((x + 0.5) s, (y + 0.5) s)`` (``PointGenerator(offset=0)`` here).
* FCOS towers keep a bias before GroupNorm (``conv_bias=True``); torchvision's FCOS head has no learnable
  per-level scale (minidet's :class:`~minidet.models.heads.Scale` is set to 1).
* P6 comes from P5 in RetinaNet v1 and FCOS (``LastLevelP6P7(256, 256)``) and from C5 in RetinaNet v2
  (``LastLevelP6P7(2048, 256)``), read off the weights' shapes by :func:`from_torchvision`.
* inference settings: RetinaNet keeps 300 detections per image, FCOS thresholds its score at 0.2.

Images: torchvision resizes inside the model (``min_size``/``max_size``); minidet does not. Compare at a
size torchvision leaves alone (``min_size = max_size =`` the image side) and a multiple of 128, so that
both use the strides 8..128 (torchvision derives strides as ``image_size // feature_size``).
Training differs too (RetinaNet v2 trains with GIoU, which minidet's RetinaNet has not): only the
networks and inference are the same.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from minidet.errors import CheckpointError
from minidet.models.anchors import AnchorGenerator
from minidet.models.backbones import ResNetBackbone, read_state_dict
from minidet.models.detectors import FCOS, DenseDetector, RetinaNet
from minidet.models.heads import FCOSHead, RetinaHead
from minidet.models.necks import FPN
from minidet.models.points import PointGenerator


class TorchvisionAnchorGenerator(AnchorGenerator):
    """RetinaNet anchors as torchvision makes them: sides ``int(octave_base_scale * s * 2^(k / n))``
    (truncated: 32, 40, 50 on P3 instead of 32, 40.3, 50.8) and base anchors rounded to whole pixels."""

    def base_anchors(self, stride: int) -> Tensor:
        sizes = [float(int(self.octave_base_scale * stride * 2 ** (k / self.scales_per_octave)))
                 for k in range(self.scales_per_octave)]
        scales = torch.tensor(sizes)
        h_ratios = torch.sqrt(torch.tensor(self.ratios))
        w_ratios = 1.0 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def _resnet50_fpn(extra_source: str) -> tuple[ResNetBackbone, FPN]:
    return ResNetBackbone(50), FPN((512, 1024, 2048), (8, 16, 32), 256, num_extra=2, extra_source=extra_source)


def build_retinanet_like_torchvision(num_classes: int = 91, version: str = "v1") -> RetinaNet:
    """A minidet RetinaNet laid out as torchvision's ``retinanet_resnet50_fpn`` (``"v1"``: plain towers,
    P6 from P5) or ``retinanet_resnet50_fpn_v2`` (``"v2"``: GroupNorm towers, P6 from C5), with
    torchvision's anchors and inference settings (0.05, 1000 per level, NMS 0.5, 300 per image)."""
    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    backbone, neck = _resnet50_fpn("p5" if version == "v1" else "c5")
    anchors = TorchvisionAnchorGenerator(neck.strides, octave_base_scale=4.0)
    head = RetinaHead(256, num_classes, anchors.num_anchors, num_convs=4, norm=None if version == "v1" else "gn")
    return RetinaNet(backbone, neck, head, anchors, num_classes, reg_loss="l1", score_thresh=0.05,
                     topk_per_level=1000, nms_thresh=0.5, max_detections=300)


def build_fcos_like_torchvision(num_classes: int = 91) -> FCOS:
    """A minidet FCOS laid out as torchvision's ``fcos_resnet50_fpn``: GroupNorm towers with conv biases,
    P6 from P5, points at cell corners, score threshold 0.2, NMS 0.6, 100 detections per image."""
    backbone, neck = _resnet50_fpn("p5")
    head = FCOSHead(256, num_classes, len(neck.strides), num_convs=4, norm="gn", conv_bias=True)
    return FCOS(backbone, neck, head, PointGenerator(neck.strides, offset=0.0), num_classes,
                score_thresh=0.2, topk_per_level=1000, nms_thresh=0.6, max_detections=100)


# torchvision name prefix -> minidet name prefix (``(?:0\.)?``: FPN convs are wrapped in a Sequential
# since torchvision 0.13; older files have them bare).
_RENAMES = [
    (r"backbone\.body\.conv1\.", "backbone.stem.0."),
    (r"backbone\.body\.bn1\.", "backbone.stem.1."),
    (r"backbone\.body\.(layer\d)\.", r"backbone.\1."),
    (r"backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"neck.lateral.\1."),
    (r"backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"neck.output.\1."),
    (r"backbone\.fpn\.extra_blocks\.p6\.", "neck.extra.0."),
    (r"backbone\.fpn\.extra_blocks\.p7\.", "neck.extra.1."),
    (r"head\.classification_head\.cls_logits\.", "head.cls_logits."),
    (r"head\.regression_head\.bbox_reg\.", "head.box_pred."),
    (r"head\.regression_head\.bbox_ctrness\.", "head.centerness."),
]
_TOWER = re.compile(r"head\.(classification|regression)_head\.conv\.(\d+)\.(?:(\d)\.)?(weight|bias)")


def _tower_step(tower: nn.Sequential) -> int:
    """Modules per block of a minidet tower: conv, [norm], ReLU."""
    return 3 if any(isinstance(m, nn.GroupNorm) for m in tower) else 2


def torchvision_to_minidet_key(key: str, model: DenseDetector) -> str:
    """The minidet state-dict key that torchvision's ``key`` holds, for ``model``'s tower layout.

    Towers: torchvision's RetinaNet wraps each block in ``Conv2dNormActivation`` (``conv.{i}.0`` the
    conv, ``conv.{i}.1`` the norm); its FCOS lists ``conv, GroupNorm, ReLU`` flat (``conv.{j}``), which is
    minidet's own layout. Raises :class:`CheckpointError` for a key that has no place in minidet."""
    m = _TOWER.fullmatch(key)
    if m:
        branch, block, sub, param = m.groups()
        tower = "cls_tower" if branch == "classification" else "box_tower"
        index = int(block) if sub is None else int(block) * _tower_step(getattr(model.head, tower)) + int(sub)
        return f"head.{tower}.{index}.{param}"
    for pattern, repl in _RENAMES:
        new, n = re.subn("^" + pattern, repl, key)
        if n:
            return new
    raise CheckpointError(f"torchvision key {key!r} has no counterpart in minidet's {type(model).__name__}")


def _read_state(path_or_state: str | Path | dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    if isinstance(path_or_state, dict):
        return path_or_state, "the given state dict"
    return read_state_dict(path_or_state, "torchvision weights"), str(path_or_state)


@torch.no_grad()
def load_torchvision_state(model: DenseDetector, path_or_state: str | Path | dict[str, Tensor]) -> DenseDetector:
    """Copy a torchvision RetinaNet/FCOS state dict into ``model`` (built by
    :func:`build_retinanet_like_torchvision` / :func:`build_fcos_like_torchvision`) and return it.

    Like nanoGPT's ``from_pretrained``: every torchvision tensor is renamed
    (:func:`torchvision_to_minidet_key`), its shape checked against the model's, and every tensor of the
    model must be filled, except FCOS's per-level scales, which torchvision does not have (set to 1).
    Raises :class:`CheckpointError` naming the file and the first offending key."""
    state, source = _read_state(path_or_state)
    own = model.state_dict()
    filled = set()
    for key, value in state.items():
        name = torchvision_to_minidet_key(key, model)
        if name not in own:
            raise CheckpointError(f"{source}: {key!r} maps to {name!r}, which {type(model).__name__} does not have")
        if own[name].shape != value.shape:
            raise CheckpointError(f"{source}: {key!r} has shape {tuple(value.shape)}, minidet's {name!r} expects "
                                  f"{tuple(own[name].shape)} (other number of classes, or another layout?)")
        own[name].copy_(value)
        filled.add(name)
    for name in own:
        if re.fullmatch(r"head\.scales\.\d+\.scale", name):
            own[name].fill_(1.0)
            filled.add(name)
    missing = [k for k in own if k not in filled]
    if missing:
        raise CheckpointError(f"{source}: no torchvision tensor for {missing[:5]}{'...' if len(missing) > 5 else ''}")
    return model


def from_torchvision(path_or_state: str | Path | dict[str, Tensor]) -> DenseDetector:
    """Build the minidet model a torchvision RetinaNet (v1 or v2) or FCOS state dict belongs to, read the
    number of classes off its classification layer, and load it. Returns the model in eval mode."""
    state, source = _read_state(path_or_state)
    if "head.classification_head.cls_logits.weight" not in state:
        raise CheckpointError(f"{source}: not a torchvision RetinaNet or FCOS state dict (no classification head)")
    out_channels = state["head.classification_head.cls_logits.weight"].shape[0]
    if "head.regression_head.bbox_ctrness.weight" in state:
        model: DenseDetector = build_fcos_like_torchvision(out_channels)
    else:
        anchors = state["head.regression_head.bbox_reg.weight"].shape[0] // 4
        version = "v2" if "head.classification_head.conv.0.1.weight" in state else "v1"
        model = build_retinanet_like_torchvision(out_channels // anchors, version)
        p6_in = state["backbone.fpn.extra_blocks.p6.weight"].shape[1]
        if (p6_in == 256) != (model.neck.extra_source == "p5"):
            raise CheckpointError(f"{source}: P6 is computed from {p6_in} channels, unusual for RetinaNet {version}")
    return load_torchvision_state(model, state).eval()

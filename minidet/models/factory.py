"""Plain constructors that put the parts together; no registry, "go to definition" always works.

>>> model = build_retinanet(num_classes=6, backbone="tiny")       # CPU lessons
>>> model = build_retinanet(num_classes=80, backbone="resnet50")  # the paper's model
>>> model = build_atss(num_classes=6, cls_loss="pfl", level_resampling=True)  # ATSS + UMOP
>>> model = build_fcos(num_classes=6, scale_ranges=scaled_ranges(0.5))        # FCOS on 256 px images
>>> model = build_dw(num_classes=6, refine=True, pos_weight_form="code")      # Dual Weighting
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from minidet.assigners.fcos import FCOS_RANGES, FCOSAssigner
from minidet.errors import ConfigError
from minidet.models.anchors import AnchorGenerator
from minidet.models.backbones import ResNetBackbone, TinyBackbone
from minidet.models.detectors.atss import ATSS
from minidet.models.detectors.dw import DualWeighting
from minidet.models.detectors.fcos import FCOS
from minidet.models.detectors.retinanet import RetinaNet
from minidet.models.heads import ATSSHead, DWHead, FCOSHead, RetinaHead
from minidet.models.necks import FPN
from minidet.models.points import PointGenerator

BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50")


def build_backbone(name: str = "tiny", weights_path: str | Path | None = None, frozen_bn: bool = False) -> nn.Module:
    """``"tiny"`` (:class:`TinyBackbone`) or ``"resnet18|34|50"`` (:class:`ResNetBackbone`, optional local weights)."""
    if name == "tiny":
        if weights_path is not None:
            raise ConfigError("weights_path is for the resnet backbones; the tiny backbone trains from scratch")
        return TinyBackbone()
    if name in ("resnet18", "resnet34", "resnet50"):
        return ResNetBackbone(int(name[6:]), weights_path=weights_path, frozen_bn=frozen_bn)
    raise ConfigError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


def build_pyramid(backbone: str, weights_path: str | Path | None, fpn_channels: int | None, head_convs: int | None
                  ) -> tuple[nn.Module, FPN, int]:
    """Backbone, FPN on P3-P7 (extra levels from P5) and the head depth: 64 channels and 2 convs for the
    tiny backbone (trains on a CPU in minutes), 256 and 4 for a ResNet (the papers')."""
    bb = build_backbone(backbone, weights_path)
    tiny = backbone == "tiny"
    ch = fpn_channels or (64 if tiny else 256)
    neck = FPN(tuple(bb.out_channels[k] for k in ("c3", "c4", "c5")), (8, 16, 32), ch, num_extra=2, extra_source="p5")
    return bb, neck, head_convs if head_convs is not None else (2 if tiny else 4)


def build_retinanet(
    num_classes: int,
    backbone: str = "tiny",
    weights_path: str | Path | None = None,
    fpn_channels: int | None = None,
    head_convs: int | None = None,
    octave_base_scale: float = 4.0,
    norm: str | None = None,
    prior_prob: float = 0.01,
    **kwargs,
) -> RetinaNet:
    """RetinaNet on P3-P7.

    With ``backbone="tiny"`` the defaults shrink to what trains on a CPU in minutes (FPN and head
    width 64, two convs per tower, GroupNorm); with a ResNet they are the paper's (256 channels,
    four convs, no norm). ``prior_prob`` initialises the classification bias (Sec. 4). ``octave_base_scale`` sets the anchor size: 4 x stride as in the paper.
    Remaining keyword arguments go to :class:`RetinaNet` (e.g. ``focal_gamma``, ``score_thresh``,
    ``cls_loss="pfl"``, ``level_resampling=True``).
    """
    bb, neck, convs = build_pyramid(backbone, weights_path, fpn_channels, head_convs)
    norm = norm if norm is not None or backbone != "tiny" else "gn"
    anchors = AnchorGenerator(neck.strides, octave_base_scale=octave_base_scale)
    head = RetinaHead(neck.out_channels, num_classes, anchors.num_anchors, num_convs=convs, prior_prob=prior_prob, norm=norm)
    return RetinaNet(bb, neck, head, anchors, num_classes, **kwargs)


def build_atss(
    num_classes: int,
    backbone: str = "tiny",
    weights_path: str | Path | None = None,
    fpn_channels: int | None = None,
    head_convs: int | None = None,
    octave_base_scale: float = 8.0,
    norm: str | None = "gn",
    prior_prob: float = 0.01,
    **kwargs,
) -> ATSS:
    """ATSS on P3-P7: one square anchor per cell of side ``octave_base_scale x stride`` (8 in the paper),
    GroupNorm towers (64 channels and 2 convs with the tiny backbone, 256 and 4 with a ResNet).
    Remaining keyword arguments go to :class:`ATSS` (e.g. ``cls_loss="pfl"``, ``level_resampling=True``,
    ``box_loss_weight``, ``score_thresh``)."""
    bb, neck, convs = build_pyramid(backbone, weights_path, fpn_channels, head_convs)
    anchors = AnchorGenerator(neck.strides, octave_base_scale=octave_base_scale, scales_per_octave=1, ratios=(1.0,))
    head = ATSSHead(neck.out_channels, num_classes, anchors.num_anchors, len(neck.strides), convs, prior_prob, norm)
    return ATSS(bb, neck, head, anchors, num_classes, **kwargs)


def build_fcos(
    num_classes: int,
    backbone: str = "tiny",
    weights_path: str | Path | None = None,
    fpn_channels: int | None = None,
    head_convs: int | None = None,
    norm: str | None = "gn",
    prior_prob: float = 0.01,
    scale_ranges: tuple[tuple[float, float], ...] = FCOS_RANGES,
    center_sampling_radius: float | None = 1.5,
    **kwargs,
) -> FCOS:
    """FCOS on P3-P7 (P6, P7 from P5): one point per cell, GroupNorm towers (64 channels and 2 convs with
    the tiny backbone, 256 and 4 with a ResNet), :class:`FCOSAssigner` with ``scale_ranges`` (COCO's by
    default; ``scaled_ranges(0.5)`` suits 256-400 px images) and ``center_sampling_radius`` (1.5 strides).
    Remaining keyword arguments go to :class:`FCOS` (e.g. ``cls_loss="pfl"``, ``level_resampling=True``,
    ``box_loss_weight``, ``score_thresh``)."""
    bb, neck, convs = build_pyramid(backbone, weights_path, fpn_channels, head_convs)
    points = PointGenerator(neck.strides)
    head = FCOSHead(neck.out_channels, num_classes, len(neck.strides), convs, prior_prob, norm)
    assigner = FCOSAssigner(tuple(scale_ranges), center_sampling_radius)
    return FCOS(bb, neck, head, points, num_classes, assigner=assigner, **kwargs)


def build_dw(
    num_classes: int,
    backbone: str = "tiny",
    weights_path: str | Path | None = None,
    fpn_channels: int | None = None,
    head_convs: int | None = None,
    norm: str | None = "gn",
    prior_prob: float = 0.02,
    refine: bool = True,
    pos_weight_form: str = "code",
    **kwargs,
) -> DualWeighting:
    """Dual Weighting on FCOS, P3-P7: :class:`DWHead` (objectness on the regression tower, classification
    prior 0.02, box refinement when ``refine``), GroupNorm towers sized as :func:`build_fcos`.
    ``pos_weight_form``: ``"code"`` (authors' exponents 5 / 3, default) or ``"paper"``. Remaining keyword
    arguments go to :class:`DualWeighting` (``soft_prior``, ``neg_prob_form``, ``mu``, ``beta``, ...)."""
    bb, neck, convs = build_pyramid(backbone, weights_path, fpn_channels, head_convs)
    points = PointGenerator(neck.strides)
    head = DWHead(neck.out_channels, num_classes, len(neck.strides), convs, prior_prob, norm, refine)
    return DualWeighting(bb, neck, head, points, num_classes, pos_weight_form=pos_weight_form, **kwargs)

"""Plain constructors that put the parts together; no registry, "go to definition" always works.

>>> model = build_retinanet(num_classes=6, backbone="tiny")       # CPU lessons
>>> model = build_retinanet(num_classes=80, backbone="resnet50")  # the paper's model
>>> model = build_atss(num_classes=6, cls_loss="pfl", level_resampling="code")  # ATSS + UMOP as released
>>> model = build_fcos(num_classes=6, scale_ranges=scaled_ranges(0.5))        # FCOS on 256 px images
>>> model = build_dw(num_classes=6, refine=True, pos_weight_form="code")      # Dual Weighting
>>> model = build_faster_rcnn(num_classes=6, iou_balanced=True, bfp=True)     # two of Libra R-CNN's switches
>>> model = build_mimicdet(num_classes=6, mimic=False)                         # MimicDet without the mimic loss
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from minidet.assigners.fcos import FCOS_RANGES, FCOSAssigner
from minidet.errors import CheckpointError, ConfigError
from minidet.models.anchors import AnchorGenerator
from minidet.models.backbones import PRETRAINED_TINY, SHAPES_PRETRAINED, ResNetBackbone, TinyBackbone
from minidet.models.detectors.atss import ATSS
from minidet.models.detectors.dw import DualWeighting
from minidet.models.detectors.faster_rcnn import FasterRCNN
from minidet.models.detectors.fcos import FCOS
from minidet.models.detectors.mimicdet import MimicDet
from minidet.models.detectors.rpn import RegionProposalNetwork
from minidet.models.detectors.retinanet import RetinaNet
from minidet.models.heads import ATSSHead, DWHead, FCOSHead, RetinaHead
from minidet.models.heads.roi_box_head import RoIBoxHead
from minidet.models.heads.rpn_head import RPNHead
from minidet.models.heads.s_head import SHead
from minidet.models.heads.t_head import THead
from minidet.models.necks import FPN, BalancedFPN
from minidet.models.points import PointGenerator
from minidet.samplers.proposal_sampler import ProposalSampler

BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50")


def build_backbone(name: str = "tiny", weights_path: str | Path | None = None, frozen_bn: bool = False) -> nn.Module:
    """``"tiny"`` (:class:`TinyBackbone`) or ``"resnet18|34|50"`` (:class:`ResNetBackbone`), from scratch or
    from a local weights file ``weights_path``. For the tiny backbone ``weights_path`` may be
    ``"shapes-pretrained"``: the shipped :data:`PRETRAINED_TINY` (see :mod:`minidet.models.backbones.pretrain`)."""
    if str(weights_path) == SHAPES_PRETRAINED:
        if name != "tiny":
            raise ConfigError(f"weights {SHAPES_PRETRAINED!r} are the tiny backbone's; backbone {name!r} needs a weights file")
        if not PRETRAINED_TINY.is_file():
            raise CheckpointError(f"weights {SHAPES_PRETRAINED!r} means {PRETRAINED_TINY}, which is not there: write it with "
                                  f"python -m minidet.models.backbones.pretrain --out {PRETRAINED_TINY}")
        weights_path = PRETRAINED_TINY
    if name == "tiny":
        return TinyBackbone(weights_path=weights_path)
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
    ``cls_loss="pfl"``, ``level_resampling="own_positives"``).
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
    Remaining keyword arguments go to :class:`ATSS` (e.g. ``cls_loss="pfl"``, ``level_resampling="own_positives"``,
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
    Remaining keyword arguments go to :class:`FCOS` (e.g. ``cls_loss="pfl"``, ``level_resampling="own_positives"``,
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
    ``pos_weight_form``: ``"code"`` (the authors' consistency and exponents 5 / 3, default) or ``"paper"``
    (the paper's consistency, weights summing to 1). Remaining keyword arguments go to :class:`DualWeighting`
    (``soft_prior``, ``neg_prob_form``, ``mu``, ``beta``, ``consistency_beta``, ...)."""
    bb, neck, convs = build_pyramid(backbone, weights_path, fpn_channels, head_convs)
    points = PointGenerator(neck.strides)
    head = DWHead(neck.out_channels, num_classes, len(neck.strides), convs, prior_prob, norm, refine)
    return DualWeighting(bb, neck, head, points, num_classes, pos_weight_form=pos_weight_form, **kwargs)


def build_faster_rcnn(
    num_classes: int,
    backbone: str = "tiny",
    weights_path: str | Path | None = None,
    fpn_channels: int | None = None,
    fc_dim: int | None = None,
    anchor_scale: float = 8.0,
    iou_balanced: bool | str = False,
    bfp: bool | str = False,
    balanced_l1: bool = False,
    instance_balanced: bool = False,
    num_rois: int | None = None,
    sampling_ratio: int | None = None,
    rpn_pre_nms_top_n: tuple[int, int] | None = None,
    rpn_post_nms_top_n: tuple[int, int] = (1000, 1000),
    **kwargs,
) -> FasterRCNN:
    """Faster R-CNN with FPN (P2-P6, P6 by subsampling), and the Libra R-CNN switches.

    ``iou_balanced`` (IoU-balanced negative sampling, K = 3: ``True`` or ``"paper"`` bins the negatives'
    IoU range, ``"code"`` reproduces the authors' sampler, see
    :meth:`~minidet.samplers.proposal_sampler.ProposalSampler.iou_balanced_form`), ``bfp`` (Balanced Feature
    Pyramid with a non-local refinement on P4; ``True`` or ``"mmdetection"`` initialises it as mmdetection,
    ``"libra"`` as the Libra R-CNN repository, see :class:`~minidet.models.necks.BalancedFPN`), ``balanced_l1`` (Balanced L1 box loss) and ``instance_balanced``
    (instance-balanced positive sampling, part of the reference code's sampler) are the ablation's four
    constructor arguments; all off is Faster R-CNN. The RPN uses one anchor size per level,
    ``anchor_scale x stride`` (8: 32 px on P2 ... 512 px on P6) with ratios 1:2, 1:1, 2:1.
    With ``backbone="tiny"`` the widths shrink to FPN 64 channels and 256-d fc layers (CPU lessons); with a
    ResNet they are the paper's (256 and 1024). ``num_rois`` RoIs are sampled per image, pooled with
    ``sampling_ratio`` RoIAlign samples per bin side; the RPN keeps ``rpn_pre_nms_top_n`` candidates per
    level and ``rpn_post_nms_top_n`` proposals per image, each ``(train, test)``. Defaults: the paper's
    512 RoIs, torchvision's ratio 2 and mmdetection's (2000, 1000) candidates with a ResNet; with the tiny
    backbone 256 RoIs, ratio 1 and (1000, 1000), which halve a CPU training step (RoIAlign's backward and
    per-level NMS dominate it; measured in the README).
    Remaining keyword arguments go to :class:`FasterRCNN`.
    """
    bb = build_backbone(backbone, weights_path)
    tiny = backbone == "tiny"
    ch = fpn_channels or (64 if tiny else 256)
    num_rois = num_rois or (256 if tiny else 512)
    sampling_ratio = sampling_ratio or (1 if tiny else 2)
    rpn_pre_nms_top_n = rpn_pre_nms_top_n or ((1000, 1000) if tiny else (2000, 1000))
    neck: nn.Module = FPN(tuple(bb.out_channels[k] for k in ("c2", "c3", "c4", "c5")), (4, 8, 16, 32), ch,
                          num_extra=1, extra_source="pool")
    if bfp:
        neck = BalancedFPN(neck, refine_level=2, refine="non_local", init="mmdetection" if bfp is True else bfp)
    anchors = AnchorGenerator(neck.strides, octave_base_scale=anchor_scale, scales_per_octave=1)
    rpn = RegionProposalNetwork(RPNHead(ch, anchors.num_anchors), anchors, pre_nms_top_n=tuple(rpn_pre_nms_top_n),
                                post_nms_top_n=tuple(rpn_post_nms_top_n))
    roi_head = RoIBoxHead(ch, num_classes, num_levels=4, sampling_ratio=sampling_ratio, fc_dim=fc_dim or (256 if tiny else 1024))
    pos_sampler = "instance_balanced" if instance_balanced else "random"
    if iou_balanced:
        form = "paper" if iou_balanced is True else iou_balanced
        sampler = ProposalSampler.iou_balanced_form(form, num=num_rois, pos_sampler=pos_sampler)
    else:
        sampler = ProposalSampler(num=num_rois, pos_sampler=pos_sampler)
    return FasterRCNN(bb, neck, rpn, roi_head, num_classes, sampler=sampler,
                      box_loss="balanced_l1" if balanced_l1 else "smooth_l1", **kwargs)


def build_libra_rcnn(num_classes: int, backbone: str = "tiny", **kwargs) -> FasterRCNN:
    """Libra R-CNN as its reference configuration: Faster R-CNN + IoU-balanced negatives, instance-balanced
    positives, Balanced Feature Pyramid and Balanced L1 loss (see :func:`build_faster_rcnn`)."""
    flags = dict(iou_balanced=True, bfp=True, balanced_l1=True, instance_balanced=True)
    return build_faster_rcnn(num_classes, backbone, **{**flags, **kwargs})


def build_mimicdet(
    num_classes: int,
    backbone: str = "tiny",
    weights_path: str | Path | None = None,
    fpn_channels: int | None = None,
    feat_dim: int | None = None,
    t_convs: int | None = None,
    norm: str | None = None,
    anchor_scale: float = 4.0,
    mimic: bool = True,
    shared_paths: bool = False,
    staggered: bool = True,
    num_rois: int | None = None,
    sampling_ratio: int | None = None,
    **kwargs,
) -> MimicDet:
    """MimicDet (no public code; built from the paper's description): FPN on P2-P7 (extra levels from P5),
    a refinement module (an RPN head, one square anchor of side ``anchor_scale x stride`` per location of
    P3-P7), the S-head and the T-head.

    The three switches of the paper's ablations: ``mimic`` (the mimic loss), ``shared_paths`` (one feature
    per head, mimicked as a whole, instead of dual-path mimicking) and ``staggered`` (T-head one level finer
    than the anchor's, else the same level). With a ResNet the sizes are the paper's: 256-channel FPN and
    deformable conv, 1024-d features, 4 regression convs in the T-head, no norm, 512 RoIs per image,
    RoIAlign sampling ratio 2. With ``backbone="tiny"`` (CPU lessons): 64 channels, 256-d features, 2 convs,
    GroupNorm after the S-head's deformable conv and in the T-head's regression convs, 128 RoIs, ratio 1.
    Remaining keyword arguments go to :class:`MimicDet` (``num_mimic``, ``neg_pos_ratio``, ``filter_thresh``,
    ``mimic_weight``, inference settings).
    """
    bb = build_backbone(backbone, weights_path)
    tiny = backbone == "tiny"
    ch = fpn_channels or (64 if tiny else 256)
    dim = feat_dim or (256 if tiny else 1024)
    norm = norm if norm is not None or not tiny else "gn"
    neck = FPN(tuple(bb.out_channels[k] for k in ("c2", "c3", "c4", "c5")), (4, 8, 16, 32), ch, num_extra=2, extra_source="p5")
    anchors = AnchorGenerator(neck.strides[1:], octave_base_scale=anchor_scale, scales_per_octave=1, ratios=(1.0,))
    s_head = SHead(ch, num_classes, conv_channels=ch, feat_dim=dim, shared=shared_paths, norm=norm)
    t_head = THead(ch, num_classes, fc_dim=dim, num_convs=t_convs or (2 if tiny else 4), shared=shared_paths, norm=norm)
    sampler = ProposalSampler(num=num_rois or (128 if tiny else 512), pos_fraction=0.25, pos_iou_thr=0.6, neg_iou_thr=0.6)
    return MimicDet(bb, neck, RPNHead(ch, 1), anchors, s_head, t_head, num_classes, sampler=sampler, mimic=mimic,
                    staggered=staggered, sampling_ratio=sampling_ratio or (1 if tiny else 2), **kwargs)

"""ATSS end to end on small inputs: losses by hand at a known start, per-level parts, UMOP switches,
inference scores, the factory, the experiment/CLI entry points and learning."""
import math

import pytest
import torch
from torchvision.ops import generalized_box_iou

from minidet.boxes import centerness_target
from minidet.cli import build_parser
from minidet.engine.experiment import MODELS, build_model
from minidet.losses import FocalLoss, ProgressiveFocalLoss
from minidet.models import ATSS, build_atss
from minidet.models.heads import ATSSHead


def make_targets():
    return [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [60, 60, 120, 110]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_centerness_target_by_hand():
    points = torch.tensor([[5.0, 5], [5, 10], [0, 0]])
    boxes = torch.tensor([[0.0, 0, 10, 20]])
    # (5, 5): l = r = 5, t = 5, b = 15 -> sqrt(1 * 5 / 15); (5, 10): the centre -> 1; (0, 0): on a side -> 0
    torch.testing.assert_close(centerness_target(points, boxes), torch.tensor([math.sqrt(1 / 3), 1.0, 0.0]))


def test_head_shapes_scales_and_initialisation():
    head = ATSSHead(8, num_classes=3, num_levels=2, num_convs=1)
    feats = [torch.rand(2, 8, 4, 6), torch.rand(2, 8, 2, 3)]
    cls, box, ctr = head(feats)
    assert cls.shape == (2, 30, 3) and box.shape == (2, 30, 4) and ctr.shape == (2, 30)
    torch.testing.assert_close(head.cls_logits.bias, torch.full((3,), -math.log(99)))  # prior 0.01
    assert head.centerness.bias.abs().sum() == 0
    with torch.no_grad():
        head.scales[1].scale.fill_(3.0)  # the per-level scale multiplies that level's deltas only
    _, box3, _ = head(feats)
    torch.testing.assert_close(box3[:, :24], box[:, :24])
    torch.testing.assert_close(box3[:, 24:], 3 * box[:, 24:])
    assert {n for n, _ in head.named_parameters() if "scales" in n} == {"scales.0.scale", "scales.1.scale"}


@pytest.mark.parametrize("kwargs", [{}, {"cls_loss": "pfl", "level_resampling": True}])
def test_losses_are_finite_and_levels_sum_to_totals(kwargs):
    torch.manual_seed(0)
    model = build_atss(3, **kwargs)
    out = model(torch.rand(2, 3, 128, 128), make_targets())
    assert set(k for k in out if k.startswith("loss_")) == {"loss_cls", "loss_box", "loss_centerness"}
    for k in ("loss_cls", "loss_box", "loss_centerness"):
        assert torch.isfinite(out[k])
        torch.testing.assert_close(out[f"levels/{k}"].sum(), out[k].detach())
    assert out["levels/num_pos"].sum() >= 2
    total = out["levels/num_pos"] + out["levels/num_neg"]  # no ignored anchors: pos + neg = every anchor
    torch.testing.assert_close(out["levels/pos_fraction"], out["levels/num_pos"] / total)
    assert ("levels/pfl_gamma" in out) == (kwargs.get("cls_loss") == "pfl")
    sum(out[k] for k in out if k.startswith("loss_")).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_box_and_centerness_losses_by_hand_with_zero_outputs():
    """With zero deltas every prediction is its anchor and every centerness logit 0 (BCE = log 2)."""
    torch.manual_seed(0)
    model = build_atss(3)
    with torch.no_grad():
        for conv in (model.head.box_pred, model.head.centerness):
            conv.weight.zero_()
            conv.bias.zero_()
    images, targets = torch.rand(2, 3, 128, 128), make_targets()
    out = model(images, targets)
    anchors = torch.cat(model.anchor_generator([(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]))
    sizes = [256, 64, 16, 4, 1]
    gt = targets[0]["boxes"]
    res = model.assigner.assign(anchors, sizes, gt[None], torch.ones(1, 2, dtype=torch.bool))
    pos = res.pos[0]
    matched = gt[res.matched_gt[0][pos]]
    ctr = centerness_target((anchors[pos, :2] + anchors[pos, 2:]) / 2, matched)
    giou = generalized_box_iou(anchors[pos], matched).diagonal()
    expected_box = 2.0 * (ctr * (1 - giou)).sum() / ctr.sum()
    torch.testing.assert_close(out["loss_box"], expected_box, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss_centerness"], torch.tensor(math.log(2)), rtol=1e-5, atol=1e-6)
    assert out["levels/num_pos"].sum() == pos.sum()


def test_inference_score_is_cls_times_centerness():
    torch.manual_seed(0)
    model = build_atss(3, score_thresh=0.0).eval()
    images = torch.rand(1, 3, 64, 64)
    cls_logits, _, ctr_logits, _, _ = model.dense_outputs(images)
    scores, boxes, level_sizes = model.predict_dense(images, torch.tensor([[64, 64]]))
    torch.testing.assert_close(scores, torch.sigmoid(cls_logits) * torch.sigmoid(ctr_logits)[..., None])
    assert boxes.shape == (1, sum(level_sizes), 4) and model.nms_thresh == 0.6
    dets = model(images)
    assert len(dets) == 1 and len(dets[0]["scores"]) <= 100


def test_factory_and_experiment_entry_points():
    model = build_atss(4)
    assert isinstance(model, ATSS) and model.anchor_generator.num_anchors == 1
    assert model.anchor_generator.base_anchors(8).tolist() == [[-32.0, -32.0, 32.0, 32.0]]  # 8 x stride
    assert model.head.cls_logits.out_channels == 4 and len(model.head.scales) == 5
    assert model.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert isinstance(model.cls_loss, FocalLoss)
    umop = build_model("atss", 4, cls_loss="pfl", level_resampling=True)
    assert isinstance(umop.cls_loss, ProgressiveFocalLoss) and umop.level_resampling
    assert "atss" in MODELS
    args = build_parser().parse_args(["train", "--model", "atss", "--cls-loss", "pfl", "--lrp"])
    assert (args.model, args.cls_loss, args.lrp) == ("atss", "pfl", True)
    with pytest.raises(ValueError, match="cls_loss"):
        build_atss(4, cls_loss="softmax")


def test_overfits_one_image(overfit):
    torch.manual_seed(0)
    model = build_atss(3)
    img = torch.rand(1, 3, 128, 128)
    tgt = make_targets()[:1]
    losses, out = overfit(model, img, tgt, steps=30)
    # the centerness BCE cannot go below the entropy of its soft targets, so compare cls + box
    assert out["loss_cls"].item() + out["loss_box"].item() < 0.3 * (losses[0] - math.log(2))


@pytest.mark.cuda
def test_cuda_losses_equal_cpu(cuda_device):
    torch.manual_seed(0)
    model = build_atss(3, cls_loss="pfl", level_resampling=True)
    images, targets = torch.rand(2, 3, 128, 128), make_targets()
    cpu = model(images, targets)
    gpu = model.to(cuda_device)(images.to(cuda_device), [{k: v.to(cuda_device) for k, v in t.items()} for t in targets])
    for k in ("loss_cls", "loss_box", "loss_centerness", "levels/pfl_gamma"):
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu["levels/num_pos"].cpu(), cpu["levels/num_pos"])


def test_score_forms_authors_threshold_the_class_score_mmdet_the_product():
    """Two candidates: class score 0.3 with centerness 0.1 (product 0.03) and 0.9 with 0.9. mmdetection's
    threshold on the product drops the first; the ATSS authors' threshold on the class score keeps it, scored
    sqrt(0.03). The square root keeps the order."""
    torch.manual_seed(0)
    model = build_atss(3).eval()
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    anchors = torch.tensor([[0.0, 0, 16, 16], [32, 32, 64, 64]])
    cls = torch.full((1, 2, 3), -20.0)
    cls[0, 0, 1], cls[0, 1, 2] = logit(0.3), logit(0.9)
    ctr = torch.tensor([[logit(0.1), logit(0.9)]])
    model.dense_outputs = lambda images: (cls, torch.zeros(1, 2, 4), ctr, anchors, [2])
    sizes = torch.tensor([[64, 64]])
    found = {}
    for form in ("mmdet", "authors"):
        model.score_form = form
        found[form] = model.predict(torch.zeros(1, 3, 64, 64), sizes)[0]
    assert found["mmdet"]["labels"].tolist() == [2]
    assert found["mmdet"]["scores"].tolist() == pytest.approx([0.81], rel=1e-5)
    assert found["authors"]["labels"].tolist() == [2, 1]
    assert found["authors"]["scores"].tolist() == pytest.approx([0.9, math.sqrt(0.03)], rel=1e-5)
    with pytest.raises(ValueError, match="score_form"):
        build_atss(3, score_form="paper")

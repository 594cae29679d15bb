"""FCOS end to end on small inputs: the head, losses by hand at a known start, per-level parts, UMOP
switches, the sqrt inference score, factory/experiment/CLI entry points and a few training steps."""
import math

import pytest
import torch

from minidet.assigners import FCOSAssigner, scaled_ranges
from minidet.cli import build_parser
from minidet.engine.experiment import MODELS, build_model
from minidet.losses import ProgressiveFocalLoss
from minidet.models import FCOS, build_fcos
from minidet.models.heads import FCOSHead

RANGES = scaled_ranges(0.5)


def make_targets():
    return [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [60, 60, 120, 110]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_head_shapes_relu_and_scales():
    head = FCOSHead(8, num_classes=3, num_levels=2, num_convs=1)
    feats = [torch.rand(2, 8, 4, 6), torch.rand(2, 8, 2, 3)]
    cls, dist, ctr = head(feats)
    assert cls.shape == (2, 30, 3) and dist.shape == (2, 30, 4) and ctr.shape == (2, 30)
    assert (dist >= 0).all()
    torch.testing.assert_close(head.cls_logits.bias, torch.full((3,), -math.log(99)))
    with torch.no_grad():
        head.box_pred.bias.fill_(1.0)  # positive pre-activations: the scale acts linearly
        _, d1, _ = head(feats)
        head.scales[0].scale.fill_(2.0)
        _, d2, _ = head(feats)
    torch.testing.assert_close(d2[:, :24], 2 * d1[:, :24])
    torch.testing.assert_close(d2[:, 24:], d1[:, 24:])


@pytest.mark.parametrize("kwargs", [{}, {"cls_loss": "pfl", "level_resampling": True}])
def test_losses_are_finite_and_levels_sum_to_totals(kwargs):
    torch.manual_seed(0)
    model = build_fcos(3, scale_ranges=RANGES, **kwargs)
    out = model(torch.rand(2, 3, 128, 128), make_targets())
    assert {k for k in out if k.startswith("loss_")} == {"loss_cls", "loss_box", "loss_centerness"}
    for k in ("loss_cls", "loss_box", "loss_centerness"):
        assert torch.isfinite(out[k])
        torch.testing.assert_close(out[f"levels/{k}"].sum(), out[k].detach())
    assert out["levels/num_pos"].sum() >= 2
    torch.testing.assert_close(out["levels/num_pos"] + out["levels/num_neg"], torch.tensor([512.0, 128, 32, 8, 2]))
    assert ("levels/pfl_gamma" in out) == (kwargs.get("cls_loss") == "pfl")
    sum(out[k] for k in out if k.startswith("loss_")).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_losses_by_hand_with_constant_outputs():
    """Zero the last convs: every point predicts an empty box at itself, centerness logit 0 and class
    probability pi = 0.01. GIoU of an empty box inside its target is 0, so every box term is 1, and the
    centerness BCE is log 2; focal loss follows from pi and the number of positives."""
    torch.manual_seed(0)
    model = build_fcos(3, scale_ranges=RANGES)
    with torch.no_grad():
        for conv in (model.head.box_pred, model.head.centerness, model.head.cls_logits):
            conv.weight.zero_()
        model.head.box_pred.bias.zero_()
        model.head.centerness.bias.zero_()
    targets = make_targets()
    out = model(torch.rand(2, 3, 128, 128), targets)
    gen = model.point_generator
    pts = gen([(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)])
    sizes = [len(p) for p in pts]
    levels = torch.repeat_interleave(torch.arange(5), torch.tensor(sizes))
    res = FCOSAssigner(RANGES).assign(torch.cat(pts), gen.point_strides(sizes), levels,
                                      targets[0]["boxes"][None], torch.ones(1, 2, dtype=torch.bool))
    n_pos, n_all = int(res.pos.sum()), 2 * sum(sizes)
    p = 0.01
    fl_pos = 0.25 * (1 - p) ** 2 * -math.log(p)  # the true class of a positive
    fl_neg = 0.75 * p**2 * -math.log(1 - p)  # every other (point, class)
    expected_cls = (n_pos * fl_pos + (3 * n_all - n_pos) * fl_neg) / n_pos
    torch.testing.assert_close(out["loss_cls"], torch.tensor(expected_cls), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["loss_box"], torch.tensor(1.0))
    torch.testing.assert_close(out["loss_centerness"], torch.tensor(math.log(2)))
    assert out["levels/num_pos"].sum() == n_pos


def test_inference_score_is_sqrt_of_cls_times_centerness():
    torch.manual_seed(0)
    model = build_fcos(3, score_thresh=0.0).eval()
    images = torch.rand(1, 3, 64, 64)
    cls_logits, dist, ctr_logits, points, strides, _ = model.dense_outputs(images)
    scores, boxes, level_sizes = model.predict_dense(images, torch.tensor([[64, 64]]))
    torch.testing.assert_close(scores, torch.sqrt(torch.sigmoid(cls_logits) * torch.sigmoid(ctr_logits)[..., None]))
    d = dist * strides[None, :, None]  # distances are in strides
    torch.testing.assert_close(boxes, torch.cat([points - d[..., :2], points + d[..., 2:]], dim=-1))
    assert model.nms_thresh == 0.6 and len(model(images)[0]["scores"]) <= 100


def test_factory_and_experiment_entry_points():
    model = build_fcos(4)
    assert isinstance(model, FCOS) and model.point_generator.strides == (8, 16, 32, 64, 128)
    assert model.assigner.scale_ranges[0] == (-1, 64) and model.assigner.center_sampling_radius == 1.5
    assert model.head.cls_logits.out_channels == 4
    pfl = build_model("fcos", 4, octave_base_scale=2.0, cls_loss="pfl", scale_ranges=RANGES)  # anchor size ignored
    assert isinstance(pfl.cls_loss, ProgressiveFocalLoss) and pfl.assigner.scale_ranges == RANGES
    assert "fcos" in MODELS and build_parser().parse_args(["train", "--model", "fcos"]).model == "fcos"
    with pytest.raises(ValueError, match="scale ranges"):
        build_fcos(4, scale_ranges=RANGES[:3])


def test_loss_falls_in_a_few_steps(overfit):
    torch.manual_seed(0)
    model = build_fcos(3, scale_ranges=RANGES)
    img, tgt = torch.rand(1, 3, 128, 128), make_targets()[:1]
    losses, out = overfit(model, img, tgt, steps=8)
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.cuda
def test_cuda_losses_equal_cpu(cuda_device):
    torch.manual_seed(0)
    model = build_fcos(3, scale_ranges=RANGES, cls_loss="pfl")
    images, targets = torch.rand(2, 3, 128, 128), make_targets()
    cpu = model(images, targets)
    gpu = model.to(cuda_device)(images.to(cuda_device), [{k: v.to(cuda_device) for k, v in t.items()} for t in targets])
    for k in ("loss_cls", "loss_box", "loss_centerness", "levels/num_pos"):
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-3, atol=1e-4)

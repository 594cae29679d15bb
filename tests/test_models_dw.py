"""Dual Weighting end to end: the head (objectness, refinement, initialisation), the three losses against
a per-image, per-gt re-implementation of the authors' loss, the paper/code switches, inference scores,
factory/experiment/CLI entry points, a few training steps, and CUDA == CPU."""
import math

import pytest
import torch
from torchvision.ops import box_iou, generalized_box_iou

from minidet.cli import build_parser
from minidet.engine.experiment import MODELS, build_model
from minidet.models import DualWeighting, build_dw
from minidet.models.heads import DWHead


def make_targets():
    return [
        {"boxes": torch.tensor([[10.0, 12, 40, 50], [60, 60, 120, 110], [20, 30, 70, 90]]),
         "labels": torch.tensor([1, 2, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_head_initialisation_and_refinement():
    feats = [torch.rand(1, 8, 11, 11)]
    head = DWHead(8, num_classes=3, num_levels=1, num_convs=1, refine=False)
    torch.testing.assert_close(head.cls_logits.bias, torch.full((3,), -math.log(0.98 / 0.02)))
    with torch.no_grad():
        head.box_pred.weight.zero_()
    cls, dist, obj = head(feats)
    assert cls.shape == (1, 121, 3) and obj.shape == (1, 121)
    torch.testing.assert_close(dist, torch.full((1, 121, 4), 4.0))  # bias 4: boxes of 8 x 8 strides
    head = DWHead(8, num_classes=3, num_levels=1, num_convs=1, refine=True)
    with torch.no_grad():
        head.box_pred.weight.zero_()
        head.refine_offsets.weight.zero_()
    _, dist, _ = head(feats)
    # each coordinate is read 4 cells away, where the coarse box is shifted by 4: the centre cell doubles
    torch.testing.assert_close(dist[0, 5 * 11 + 5], torch.full((4,), 8.0))
    assert {n for n, _ in head.named_parameters() if n.startswith("refine_offsets")} == {"refine_offsets.weight", "refine_offsets.bias"}


def reference_losses(scores, boxes, points, strides, targets, pos_form="code", neg_form="code"):
    """The authors' DWHead.loss, one image and one gt at a time (torchvision IoU / GIoU); ``pos_form`` /
    ``neg_form="paper"`` swap in the paper's consistency and normalisation, or its fixed P_neg curve."""
    cls_pos = loc = neg = neg_norm = 0.0
    for s, bx, t in zip(scores, boxes, targets):
        gts, labels = t["boxes"], t["labels"]
        neg_w = torch.ones_like(s)
        for g, (box, lab) in enumerate(zip(gts, labels.tolist())):
            inside = ((points - box[:2]).min(1).values > 0) & ((box[2:] - points).min(1).values > 0)
            d = (points - (box[:2] + box[2:]) / 2) / strides[:, None]
            prior = torch.exp(-d**2 / (2 * 1.11**2)).prod(1) * inside
            giou_l = 1 - generalized_box_iou(bx, box[None])[:, 0]
            p_loc, p_cls = torch.exp(-5 * giou_l), s[:, lab]
            if pos_form == "code":  # the authors' consistency
                v = p_cls * p_loc
            else:  # the paper's t = s^0.8 u^0.2, u the IoU of the predicted box
                v = p_cls.detach() ** 0.8 * box_iou(bx, box[None])[:, 0].detach() ** 0.2
            mu_den = 3 if pos_form == "code" else 5
            w = (torch.exp(5 * v) * v * prior / (torch.exp(mu_den * v) * v * prior).sum().clamp(min=1e-12)).detach()
            cls_pos = cls_pos + 0.25 * (w * -torch.log(p_cls)).sum()
            loc = loc + 0.25 * (w * -torch.log(p_loc)).sum()
            if inside.any():
                x = box_iou(bx[inside], box[None])[:, 0].detach()
                if neg_form == "code":
                    tt = (x**2 - 1) / (0.5**2 - 1)
                    y = (tt - tt.min() + 1e-12) / (min(1.0, float(tt.max())) - tt.min() + 1e-12)
                else:  # through (0.5, 1) and (0.95, 0), 0 above 0.95
                    y = ((x**2 - 0.95**2) / (0.5**2 - 0.95**2)).clamp(0, 1)
                y[x < 0.5] = 1
                idx = inside.nonzero().flatten()
                neg_w[idx, lab] = torch.minimum(neg_w[idx, lab], y)
        neg_norm += float((1 - neg_w).sum())
        neg = neg + (neg_w * s**2 * -torch.log(1 - s)).sum()
    num_gt = max(1, sum(len(t["labels"]) for t in targets))
    return cls_pos / num_gt, loc / num_gt, neg / max(1.0, neg_norm)


@pytest.mark.parametrize("form,neg_form", [("code", "code"), ("paper", "code"), ("paper", "paper")])
def test_losses_equal_a_per_gt_reference(form, neg_form):
    torch.manual_seed(0)
    model = build_dw(3, pos_weight_form=form, neg_prob_form=neg_form)
    with torch.no_grad():  # spread the scores so that some predictions overlap their gt by IoU >= 0.5
        model.head.cls_logits.bias.fill_(0.0)
        model.head.box_pred.bias.fill_(1.5)
    images, targets = torch.rand(2, 3, 128, 128), make_targets()
    out = model(images, targets)
    scores, boxes, points, strides, _ = model.dense_outputs(images)
    ref = reference_losses(scores, boxes, points, strides, targets, form, neg_form)
    for key, value in zip(("loss_cls_pos", "loss_box", "loss_cls_neg"), ref):
        torch.testing.assert_close(out[key], value, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(out[f"levels/{key}"].sum(), out[key].detach())
    assert {k for k in out if k.startswith("loss_")} == {"loss_cls_pos", "loss_box", "loss_cls_neg"}
    assert out["levels/num_pos"].sum() > 0


def test_losses_backward_and_switches():
    torch.manual_seed(0)
    images, targets = torch.rand(2, 3, 96, 96), make_targets()
    outs = {}
    for kw in ({}, {"pos_weight_form": "paper"}, {"soft_prior": False}, {"refine": False}, {"neg_prob_form": "paper"}):
        torch.manual_seed(0)
        model = build_dw(3, **kw)
        out = model(images, targets)
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        outs[str(kw)] = out["loss_cls_pos"].detach()
    assert outs["{}"] != outs["{'pos_weight_form': 'paper'}"] and outs["{}"] != outs["{'soft_prior': False}"]
    with pytest.raises(ValueError, match="own weighted"):
        build_dw(3, cls_loss="pfl")
    with pytest.raises(ValueError, match="pos_weight_form"):
        build_dw(3, pos_weight_form="both")


def test_inference_score_is_cls_times_objectness():
    torch.manual_seed(0)
    model = build_dw(3, score_thresh=0.0).eval()
    images = torch.rand(1, 3, 64, 64)
    cls_logits, _, obj_logits = model.head(model.features(images))
    scores, boxes, level_sizes = model.predict_dense(images, torch.tensor([[64, 64]]))
    torch.testing.assert_close(scores, torch.sigmoid(cls_logits) * torch.sigmoid(obj_logits)[..., None])
    assert boxes.shape == (1, sum(level_sizes), 4) and model.nms_thresh == 0.6
    assert len(model(images)[0]["scores"]) <= 100


def test_factory_and_experiment_entry_points():
    model = build_model("dw", 4, octave_base_scale=2.0)  # the anchor size is ignored by point detectors
    assert isinstance(model, DualWeighting) and model.head.refine and model.pos_weight_form == "code"
    assert not build_dw(4, refine=False).head.refine
    assert "dw" in MODELS and build_parser().parse_args(["train", "--model", "dw"]).model == "dw"


def test_loss_falls_in_a_few_steps(overfit):
    torch.manual_seed(0)
    model = build_dw(3)
    img, tgt = torch.rand(1, 3, 128, 128), make_targets()[:1]
    losses, out = overfit(model, img, tgt, steps=8)
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.cuda
def test_cuda_losses_equal_cpu(cuda_device):
    torch.manual_seed(0)
    model = build_dw(3)
    images, targets = torch.rand(2, 3, 128, 128), make_targets()
    cpu = model(images, targets)
    gpu = model.to(cuda_device)(images.to(cuda_device), [{k: v.to(cuda_device) for k, v in t.items()} for t in targets])
    for k in ("loss_cls_pos", "loss_box", "loss_cls_neg", "levels/num_pos"):
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("autocast_bf16", [False, True])
def test_saturated_scores_give_finite_gradients(autocast_bf16):
    """Both logits far above 16.6: ``s = sigmoid(cls) * sigmoid(obj)`` rounds to exactly 1 in float32, where a
    log clamped after the fact has a 0 * inf = NaN gradient behind a finite loss. In fp32 and under CPU bf16
    autocast (which the trainer uses where the CPU has native bf16)."""
    torch.manual_seed(0)
    model = build_dw(num_classes=3, backbone="tiny", fpn_channels=16, refine=False)
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(40.0)
        model.head.centerness.bias.fill_(40.0)  # the objectness conv (see DWHead)
    images = torch.rand(2, 3, 96, 96)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
        out = model(images, make_targets())
        scores = model.dense_outputs(images)[0]
    assert (scores == 1).any(), "the test must reach scores that round to 1"
    loss = sum(v for k, v in out.items() if k.startswith("loss_"))
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


def test_bce_clamps_the_probability_not_the_log():
    from minidet.losses.dual_weighting import bce_one, bce_zero

    p = torch.tensor([0.0, 1e-45, 0.5, 1.0 - 2 ** -24, 1.0], requires_grad=True)
    g_one, = torch.autograd.grad(bce_one(p).sum(), p)
    g_zero, = torch.autograd.grad(bce_zero(p).sum(), p)
    assert torch.isfinite(g_one).all() and torch.isfinite(g_zero).all()
    torch.testing.assert_close(bce_one(p.detach())[2], torch.tensor(math.log(2.0)))
    torch.testing.assert_close(bce_zero(p.detach())[4], torch.tensor(24 * math.log(2.0)))  # -log(2^-24)
    assert g_one[0] == 0 and g_zero[4] == 0  # clamped: no gradient, as a clamped log had
    torch.testing.assert_close(g_one[2], torch.tensor(-2.0))  # d(-log p)/dp = -1/p
    torch.testing.assert_close(g_zero[2], torch.tensor(2.0))  # d(-log(1-p))/dp = 1/(1-p)

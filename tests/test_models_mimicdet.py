"""MimicDet: staggered level pairing, RoIAlign per level, refinement decoding, the offset micro-network,
the guided deformable conv, the S-head loss against a per-image reference, training outputs and switches,
and an inference graph that never touches the T-head."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import MultiScaleRoIAlign, deform_conv2d

from minidet.boxes.ops import pad_targets
from minidet.engine.experiment import build_model
from minidet.models import MimicDet, build_mimicdet
from minidet.models.heads import GuidedDeformConv, OffsetNet, deform_conv2d_sampled, sampling_points
from minidet.models.roi import level_roi_align, nearest_size_level
from torchvision.ops import roi_align
from minidet.samplers.proposal_sampler import RoISamples


def hand_targets():
    return [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 20.0, 100.0, 100.0]]), "labels": torch.tensor([2, 0])},
            {"boxes": torch.tensor([[30.0, 40.0, 62.0, 60.0]]), "labels": torch.tensor([1])}]


def small_model(**kw) -> MimicDet:
    torch.manual_seed(0)
    return build_mimicdet(3, anchor_scale=2.0, num_rois=32, **kw)


class Capture(nn.Module):
    """Stands in for the T-head: returns what it is given."""

    def forward(self, pooled):
        return pooled


def test_level_roi_align_matches_multiscale_roialign():
    """With the levels FPN's size rule picks, per-level RoIAlign equals torchvision's MultiScaleRoIAlign."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 3, 64 // 2 ** i, 64 // 2 ** i, generator=g) for i in range(4)]  # strides 4..32, 256 px
    xy = torch.rand(2, 10, 2, generator=g) * 100
    rois = torch.cat([xy, xy + 8 + torch.rand(2, 10, 2, generator=g) * 200], -1)
    side = ((rois[..., 2] - rois[..., 0]) * (rois[..., 3] - rois[..., 1])).sqrt()
    # FPN Eq. 1 on P2-P5, with the canonical size scaled from 224 px to our 256 px images' 56
    levels = (torch.floor(4 + torch.log2(side / 56) + 1e-6).clamp(2, 5) - 2).long()
    ours = level_roi_align(feats, rois, levels, (4, 8, 16, 32), output_size=7, sampling_ratio=2)
    names = [f"p{i}" for i in range(4)]
    ref = MultiScaleRoIAlign(names, 7, 2, canonical_scale=56)(OrderedDict(zip(names, feats)), list(rois.unbind(0)), [(256, 256)] * 2)
    assert levels.unique().numel() >= 3  # the draw exercises several levels
    assert torch.allclose(ours.flatten(0, 1), ref, atol=1e-5)


def test_level_roi_align_keeps_rois_in_float32_with_bf16_features():
    """bf16 features: boxes near 600 px and batch indices above 256 must not be rounded to bf16 (4-pixel
    steps, wrong image). The result equals pooling the same bf16 values in float32, to bf16 precision."""
    g = torch.Generator().manual_seed(0)
    b = 260
    feats = [torch.randn(b, 2, 80, 80, generator=g).bfloat16()]  # stride 8: a 640 px image
    rois = torch.tensor([513.7, 530.2, 601.3, 617.9]).expand(b, 1, 4).clone()
    rois[-1, 0] = torch.tensor([5.0, 6.0, 60.0, 70.0])
    levels = torch.zeros(b, 1, dtype=torch.long)
    ours = level_roi_align(feats, rois, levels, (8,), output_size=7, sampling_ratio=2)
    assert ours.dtype == torch.bfloat16
    boxes = torch.cat([torch.arange(b, dtype=torch.float32)[:, None], rois[:, 0]], 1)
    ref = roi_align(feats[0].float(), boxes, 7, 1 / 8, 2, False)
    torch.testing.assert_close(ours[:, 0].float(), ref, atol=0, rtol=2 ** -8)


def test_nearest_size_level():
    boxes = torch.tensor([[0.0, 0, 16, 16], [0, 0, 30, 30], [0, 0, 64, 64], [0, 0, 5, 5], [0, 0, 1000, 1000]])
    assert nearest_size_level(boxes, 16.0, 5).tolist() == [0, 1, 2, 0, 4]


@pytest.mark.parametrize("staggered", [True, False])
def test_staggered_level_pairing(staggered):
    """An anchor of S-head level l (P3 = 0) is pooled by the T-head from P_{l+2} (staggered) or P_{l+3};
    an added ground truth from the level of the anchor size nearest to its own."""
    model = small_model(staggered=staggered)
    assert model.s_strides == (8, 16, 32, 64, 128)
    assert model.t_strides == ((4, 8, 16, 32, 64) if staggered else (8, 16, 32, 64, 128))
    model.t_head = Capture()
    sizes = [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]  # P3-P7 of a 256 px image
    level_sizes = [h * w for h, w in sizes]
    # T-level i is filled with the value of its stride, so a pooled value names the level it came from
    t_feats = [torch.full((1, 2, 256 // s, 256 // s), float(s)) for s in model.t_strides]
    offsets = torch.tensor([0, *torch.tensor(level_sizes).cumsum(0).tolist()])
    index = torch.tensor([[int(offsets[1]) + 5, int(offsets[3]), sum(level_sizes)]])  # a P4 anchor, a P6 anchor, a gt
    rois = torch.tensor([[[8.0, 8, 40, 40], [0, 0, 128, 128], [0, 0, 64, 64]]])  # the gt is 64 px: level P5
    samples = RoISamples(rois, torch.zeros(1, 3, dtype=torch.long), rois, torch.ones(1, 3, dtype=torch.bool),
                         torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 3), index)
    pooled = model.teacher(t_feats, samples, level_sizes)  # (1, 3, 2, 7, 7)
    got = pooled[0, :, 0, 3, 3].tolist()
    finer = 2 if staggered else 1  # stride ratio between the pooled level and the anchor's own
    assert got == [16.0 / finer, 64.0 / finer, 32.0 / finer]


def test_refinement_decoding_and_delta_maps():
    model = small_model()
    head = model.refine_head
    for conv in (head.objectness, head.deltas):
        nn.init.zeros_(conv.weight)
    with torch.no_grad():
        head.deltas.bias.copy_(torch.tensor([0.5, 0.0, math.log(2.0), 0.0]))
    feats = model.features(torch.rand(1, 3, 64, 64))  # P3-P7
    r = model.refinement(feats)
    # P3 anchor of cell (0, 0): 16 px centred at (0, 0); dx = 0.5 moves the centre by 8 px, dw = log 2 doubles w
    assert r.anchors[0].tolist() == [-8.0, -8.0, 8.0, 8.0]
    assert r.refined[0, 0].tolist() == pytest.approx([-8.0, -8.0, 24.0, 8.0])
    assert r.level_sizes == [64, 16, 4, 1, 1]
    # the delta maps hold each anchor's deltas at its (y, x): anchor 8 * 3 + 5 of P3 is cell (3, 5)
    nn.init.normal_(head.deltas.weight)  # deltas that differ from cell to cell
    r2 = model.refinement(feats)
    assert r2.deltas[0, :, 0].unique().numel() == r2.deltas.shape[1]
    assert torch.equal(r2.delta_maps[0][0, :, 3, 5], r2.deltas[0, 3 * 8 + 5].detach())
    assert torch.equal(r2.delta_maps[1][0, :, 2, 1], r2.deltas[0, 64 + 2 * 4 + 1].detach())


def test_offset_net_and_s_head_shapes():
    assert OffsetNet(5)(torch.randn(2, 4, 7, 9)).shape == (2, 50, 7, 9)
    assert OffsetNet(3)(torch.randn(2, 4, 7, 9)).shape == (2, 18, 7, 9)
    model = small_model()
    seen = []
    model.s_head.dconv_p3.offset_net.register_forward_hook(lambda m, i, o: seen.append(("p3", tuple(o.shape))))
    model.s_head.dconv.offset_net.register_forward_hook(lambda m, i, o: seen.append(("p4+", tuple(o.shape))))
    feats = model.features(torch.rand(2, 3, 64, 64))
    r = model.refinement(feats)
    out = model.s_head(feats, r.delta_maps)
    assert seen[0] == ("p3", (2, 18, 8, 8)) and seen[1:] == [("p4+", (2, 50, 4, 4)), ("p4+", (2, 50, 2, 2)),
                                                             ("p4+", (2, 50, 1, 1)), ("p4+", (2, 50, 1, 1))]
    assert out.cls_logits.shape == (2, 86, 4) and out.deltas.shape == (2, 86, 4) and out.feature.shape == (2, 86, 256)


@pytest.mark.parametrize("backend", ["torchvision", "grid_sample"])
@pytest.mark.parametrize("k", [3, 5])
def test_guided_deform_conv_with_zero_offsets_is_a_plain_conv(backend, k):
    torch.manual_seed(0)
    conv = GuidedDeformConv(6, 5, k, backend=backend)  # the micro-network's last layer starts at zero
    x, deltas = torch.randn(2, 6, 9, 11), torch.randn(2, 4, 9, 11)
    out, offsets = conv(x, deltas)
    assert offsets.abs().max() == 0
    assert torch.allclose(out, F.conv2d(x, conv.weight, conv.bias, padding=k // 2), atol=1e-5)


def test_sampled_deform_conv_equals_torchvision_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    off = (3 * torch.randn(2, 50, 6, 7, generator=g, dtype=torch.float64)).requires_grad_()  # some reach outside
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    ref, ours = deform_conv2d(x, off, w, b, padding=2), deform_conv2d_sampled(x, off, w, b)
    assert torch.allclose(ours, ref, atol=1e-10)
    for gr, go in zip(torch.autograd.grad(ref.square().sum(), (x, off, w, b)), torch.autograd.grad(ours.square().sum(), (x, off, w, b))):
        assert torch.allclose(go, gr, atol=1e-8)


def test_sampling_points_hand_made():
    off = torch.zeros(1, 18, 4, 4)
    off[0, 0, 1, 2] = 0.5  # dy of kernel position (0, 0) at cell (1, 2)
    off[0, 17, 1, 2] = -1.0  # dx of kernel position (2, 2)
    pts = sampling_points(off, 3)[0, 1, 2]  # (9, 2) as (x, y)
    assert pts[0].tolist() == [1.0, 0.5] and pts[4].tolist() == [2.0, 1.0] and pts[8].tolist() == [2.0, 2.0]


def test_s_head_loss_matches_a_per_image_reference():
    """loss_s_cls: cross-entropy of the positives (IoU >= 0.6 with a refined anchor, or an object's best) and of
    the 3 x positives hardest kept negatives (IoU < 0.4) of each image, divided by the positives; recomputed here
    one image at a time with topk."""
    model = small_model()
    images = torch.rand(2, 3, 96, 96)
    targets = hand_targets()
    out = model(images, targets)
    with torch.no_grad():
        feats = model.features(images)
        r = model.refinement(feats)
        s = model.s_head(feats, r.delta_maps)
    keep = model.kept(r)
    total, n_pos = 0.0, 0
    for b, t in enumerate(targets):
        iou = torch.stack([_iou(r.refined[b], g) for g in t["boxes"]], 1)  # (A, G)
        best, arg = iou.max(1)
        is_best = (iou == iou.max(0).values).any(1)  # each object's best refined anchor is positive too
        pos, neg = ((best >= 0.6) | is_best) & keep[b], (best < 0.4) & ~is_best & keep[b]
        labels = torch.where(pos, t["labels"][arg], torch.tensor(3))
        ce = F.cross_entropy(s.cls_logits[b], labels, reduction="none")
        k = 3 * max(int(pos.sum()), 1)
        hard = ce[neg].topk(min(k, int(neg.sum()))).values
        total += float(ce[pos].sum() + hard.sum())
        n_pos += int(pos.sum())
    assert n_pos > 0
    assert float(out["loss_s_cls"].detach()) == pytest.approx(total / n_pos, rel=1e-4)


def _iou(boxes, box):
    lt, rb = torch.maximum(boxes[:, :2], box[:2]), torch.minimum(boxes[:, 2:], box[2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    return inter / ((boxes[:, 2:] - boxes[:, :2]).prod(1) + (box[2:] - box[:2]).prod() - inter)


@pytest.mark.parametrize("kw", [{}, {"mimic": False}, {"shared_paths": True}, {"staggered": False}])
def test_train_outputs_and_switches(kw):
    model = small_model(**kw)
    out = model(torch.rand(2, 3, 96, 96), hand_targets())
    losses = {k for k in out if k.startswith("loss_")}
    expected = {"loss_refine_cls", "loss_refine_box", "loss_s_cls", "loss_s_box", "loss_t_cls", "loss_t_box"}
    assert losses == expected | ({"loss_mimic"} if kw.get("mimic", True) else set())
    assert {"stats/mimic_cos_cls", "stats/mimic_cos_reg"} <= set(out)
    total = sum(out[k] for k in losses)
    assert torch.isfinite(total)
    total.backward()
    assert model.t_head.cls.weight.grad.abs().sum() > 0 and model.s_head.cls_logits.weight.grad.abs().sum() > 0
    assert model.refine_head.objectness.weight.grad.abs().sum() > 0
    assert (model.s_head.reg_feat is None) == kw.get("shared_paths", False)


def test_mimic_loss_moves_the_student_not_the_teacher():
    model = small_model()
    out = model(torch.rand(2, 3, 96, 96), hand_targets())
    out["loss_mimic"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.t_head.parameters())
    assert model.s_head.cls_feat[0].weight.grad.abs().sum() > 0 and model.s_head.reg_feat.weight.grad.abs().sum() > 0


def test_inference_runs_without_the_t_head_and_p2():
    model = small_model().eval()
    images = torch.rand(2, 3, 96, 96)
    called = []
    for name, module in [("t_head", model.t_head), ("p2 lateral", model.neck.lateral[0]), ("p2 output", model.neck.output[0])]:
        module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
    before = model(images)
    with torch.no_grad():
        for p in model.t_head.parameters():
            p.fill_(float("nan"))  # a T-head parameter used anywhere would poison the detections
    after = model(images)
    assert called == []
    for a, b in zip(before, after):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
        assert torch.isfinite(b["boxes"]).all() and len(b["boxes"]) <= 100


def test_build_model_by_name_uses_the_rpn_sizes():
    model = build_model("mimicdet", 3, octave_base_scale=2.0)
    assert model.anchor_generator.octave_base_scale == 2.0  # 16 px on P3 ... 256 px on P7
    with pytest.raises(Exception, match="softmax"):
        build_model("mimicdet", 3, cls_loss="pfl")


def test_overfits_one_batch(overfit):
    model = small_model()
    images = torch.rand(2, 3, 96, 96)
    losses, out = overfit(model, images, hand_targets(), 40)
    assert losses[-1] < 0.5 * losses[0]
    assert pad_targets(hand_targets())[0].shape == (2, 2, 4)


@pytest.mark.cuda
def test_mimicdet_on_cuda_with_bf16_and_both_deform_backends(cuda_device, overfit):
    model = small_model().to(cuda_device)
    images = torch.rand(2, 3, 96, 96, device=cuda_device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        losses, out = overfit(model, images, [{k: v.to(cuda_device) for k, v in t.items()} for t in hand_targets()], 3)
    assert all(math.isfinite(v) for v in losses) and out["stats/kept_fraction"].is_cuda
    assert model.s_head.dconv.backend == "auto"  # torchvision's deform_conv2d on CUDA
    dets = model.eval()(images)
    assert len(dets) == 2 and all(d["boxes"].is_cuda for d in dets)


@pytest.mark.cuda
def test_sampled_deform_conv_equals_torchvision_on_cuda(cuda_device, monkeypatch):
    """The grid_sample form against torchvision's CUDA kernel, with TF32 off: cuDNN convolutions default to
    TF32 (10-bit mantissa), which alone moves the result by about 1e-2."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    g = torch.Generator(device=cuda_device).manual_seed(0)
    x, off = torch.randn(2, 6, 9, 11, device=cuda_device, generator=g), 2 * torch.randn(2, 50, 9, 11, device=cuda_device, generator=g)
    w, b = torch.randn(5, 6, 5, 5, device=cuda_device, generator=g), torch.randn(5, device=cuda_device, generator=g)
    torch.testing.assert_close(deform_conv2d_sampled(x, off, w, b), deform_conv2d(x, off, w, b, padding=2), atol=1e-4, rtol=1e-4)

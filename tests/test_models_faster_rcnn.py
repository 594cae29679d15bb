"""Faster R-CNN / Libra R-CNN: RPN and RoI target assignment on hand-made boxes, proposals, losses, inference."""
from __future__ import annotations

import pytest
import torch

from minidet.boxes.ops import pad_targets
from minidet.models import build_faster_rcnn, build_libra_rcnn
from minidet.models.anchors import AnchorGenerator
from minidet.models.detectors.rpn import RegionProposalNetwork, select_proposals
from minidet.models.heads.rpn_head import RPNHead
from minidet.models.necks import BalancedFPN
from minidet.models.postprocess import postprocess_per_class
from minidet.samplers.proposal_sampler import ProposalSampler


def hand_targets():
    return [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 20.0, 100.0, 100.0]]), "labels": torch.tensor([2, 0])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]


def test_roi_assignment_on_hand_made_boxes():
    """IoU >= 0.5 positive with its ground truth's label, below 0.5 background (label C), ground truths are
    added as proposals (IoU 1), padding never sampled."""
    props = torch.tensor([[[10.0, 10.0, 50.0, 50.0],   # = gt 0            -> IoU 1
                           [12.0, 10.0, 52.0, 50.0],   # shifted by 2 px   -> IoU 0.905, positive (label 2)
                           [30.0, 10.0, 70.0, 50.0],   # half overlap      -> IoU 1/3, negative
                           [60.0, 20.0, 100.0, 60.0],  # half of gt 1      -> IoU 0.5, positive (label 0)
                           [0.0, 0.0, 1.0, 1.0]]])     # padding (invalid)
    valid = torch.tensor([[True, True, True, True, False]])
    gt_boxes, gt_labels, gt_valid = pad_targets(hand_targets()[:1])
    sampler = ProposalSampler(num=16, pos_fraction=0.5)
    cand, cand_valid, a = sampler.assign(props, valid, gt_boxes, gt_valid)
    assert cand.shape == (1, 7, 4) and cand_valid.tolist() == [[True, True, True, True, False, True, True]]
    assert a.pos.tolist() == [[True, True, False, True, False, True, True]]
    assert a.neg.tolist() == [[False, False, True, False, False, False, False]]
    assert torch.allclose(a.max_iou[0, :4], torch.tensor([1.0, 1520 / 1680, 1 / 3, 0.5]), atol=1e-4)
    s = sampler(props, valid, gt_boxes, gt_labels, gt_valid, num_classes=3, generator=torch.Generator().manual_seed(0))
    assert s.valid.sum() == 6  # 5 positives + 1 negative, everything available
    got = {tuple(r.tolist()): (int(lab), bool(p)) for r, lab, p, v in zip(s.rois[0], s.labels[0], s.pos[0], s.valid[0]) if v}
    assert got[(12.0, 10.0, 52.0, 50.0)] == (2, True)
    assert got[(30.0, 10.0, 70.0, 50.0)] == (3, False)  # background = C
    assert got[(60.0, 20.0, 100.0, 60.0)] == (0, True)
    assert (0.0, 0.0, 1.0, 1.0) not in got


def test_rpn_assignment_and_loss_on_hand_made_boxes():
    """One level, stride 16, one 32-px anchor per cell: the anchor centred on a 32-px object is positive."""
    anchors = AnchorGenerator((16,), octave_base_scale=2.0, scales_per_octave=1, ratios=(1.0,))
    rpn = RegionProposalNetwork(RPNHead(4, 1), anchors, num_samples=8, pos_fraction=0.5)
    feats = [torch.zeros(1, 4, 4, 4)]
    a = torch.cat(anchors([(4, 4)]))
    assert a.shape == (16, 4) and a[5].tolist() == [0.0, 0.0, 32.0, 32.0]  # cell (1, 1): centre (16, 16)
    gt = (torch.tensor([[[0.0, 0.0, 32.0, 32.0]]]), torch.tensor([[True]]))
    assign = rpn.assigner.assign(a, *gt)
    assert assign.pos[0].nonzero().squeeze(1).tolist() == [5]
    _, _, _, losses = rpn(feats, torch.tensor([[64, 64]]), gt)
    # zero features: objectness logit 0 -> BCE ln 2 for every sampled anchor; deltas 0 -> exact box, no box loss
    assert float(losses["loss_rpn_cls"].detach()) == pytest.approx(0.6931, abs=1e-4)
    assert float(losses["loss_rpn_box"].detach()) == pytest.approx(0.0, abs=1e-6)


def test_select_proposals_topk_nms_and_padding():
    # two images, one level of 4 boxes: image 0 has two near-duplicates, image 1 one box of zero size
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.5, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 0.0, 50.0, 10.0]],
                          [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0], [20.0, 20.0, 30.0, 30.0], [40.0, 0.0, 50.0, 10.0]]])
    logits = torch.tensor([[3.0, 2.0, 1.0, -1.0], [0.0, 5.0, 1.0, 2.0]])
    props, scores, valid = select_proposals(logits, boxes, [4], torch.tensor([[64, 64], [64, 64]]), pre_nms_top_n=3,
                                            post_nms_top_n=3, nms_thresh=0.7)
    # image 0: top-3 = boxes 0, 1, 2; box 1 suppressed by box 0 -> [0, 2]; image 1: top-3 = 1 (degenerate, dropped), 3, 2
    assert valid.tolist() == [[True, True, False], [True, True, False]]
    assert props[0, :2].tolist() == [boxes[0, 0].tolist(), boxes[0, 2].tolist()]
    assert props[1, :2].tolist() == [boxes[1, 3].tolist(), boxes[1, 2].tolist()]
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_postprocess_per_class_keeps_class_specific_boxes():
    scores = torch.tensor([[[0.9, 0.8], [0.85, 0.01]]])  # 2 RoIs, 2 classes
    boxes = torch.tensor([[[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]],
                           [[0.5, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 5.0]]]])
    det = postprocess_per_class(scores, boxes, torch.tensor([[100, 100]]), score_thresh=0.05, nms_thresh=0.5)[0]
    # class 0: RoI 1 suppressed by RoI 0; class 1: RoI 0's own class-1 box survives
    assert det["labels"].tolist() == [0, 1] and det["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert det["boxes"][1].tolist() == [50.0, 50.0, 60.0, 60.0]


@pytest.mark.parametrize("builder", [build_faster_rcnn, build_libra_rcnn])
def test_train_and_eval_outputs(builder):
    torch.manual_seed(0)
    model = builder(3, anchor_scale=4.0)
    images = torch.rand(2, 3, 96, 96)
    out = model(images, hand_targets())
    assert {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"} <= set(out)
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_head.cls.weight.grad is not None and model.rpn.head.objectness.weight.grad is not None
    model.eval()
    dets = model(images)
    assert len(dets) == 2 and all(d["boxes"].shape[1] == 4 and len(d["boxes"]) <= 100 for d in dets)


def test_switches_build_the_right_parts():
    m = build_faster_rcnn(3, iou_balanced=True, bfp=True, balanced_l1=True, instance_balanced=True)
    assert isinstance(m.neck, BalancedFPN) and m.box_loss == "balanced_l1"
    assert (m.sampler.neg_sampler, m.sampler.pos_sampler) == ("iou_balanced", "instance_balanced")
    base = build_faster_rcnn(3)
    assert not isinstance(base.neck, BalancedFPN) and base.box_loss == "smooth_l1"
    assert (base.sampler.neg_sampler, base.sampler.pos_sampler) == ("random", "random")
    assert base.sampler.num == 256 and build_faster_rcnn(3, backbone="resnet18").sampler.num == 512


def test_overfits_one_batch(overfit):
    torch.manual_seed(0)
    model = build_libra_rcnn(3, anchor_scale=4.0)
    images = torch.rand(2, 3, 96, 96)
    losses, _ = overfit(model, images, hand_targets(), 40)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.cuda
def test_faster_rcnn_cuda_step_and_amp(cuda_device):
    torch.manual_seed(0)
    model = build_libra_rcnn(3, anchor_scale=4.0).to(cuda_device)
    images = torch.rand(2, 3, 96, 96, device=cuda_device)
    targets = [{k: v.to(cuda_device) for k, v in t.items()} for t in hand_targets()]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(images, targets)
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    assert len(model(images)) == 2

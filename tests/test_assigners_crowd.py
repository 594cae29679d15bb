"""Crowd regions as ignore regions: IoF by hand, the data path, and every detector's assignment."""
from __future__ import annotations

import json

import pytest
import torch
from torchvision.ops import box_area

from minidet.assigners.crowd import CrowdRegions, box_iof
from minidet.boxes.ops import pad_targets
from minidet.data import CocoDetection, build_transforms
from minidet.models import build_atss, build_dw, build_faster_rcnn, build_fcos, build_mimicdet, build_retinanet
from minidet.models.anchors import AnchorGenerator
from minidet.models.detectors.rpn import RegionProposalNetwork
from minidet.models.heads.rpn_head import RPNHead
from minidet.samplers.proposal_sampler import ProposalSampler

CROWD = torch.tensor([[0.0, 0.0, 64.0, 64.0]])  # the top-left quarter of a 128 px image


def test_iof_by_hand():
    elements = torch.tensor([[0.0, 0.0, 10.0, 10.0],    # inside: 1
                             [60.0, 0.0, 70.0, 10.0],   # 4 of 10 px wide inside: 0.4
                             [100.0, 100.0, 110.0, 110.0],  # outside: 0
                             [5.0, 5.0, 5.0, 5.0]])     # no area: 0
    iof = box_iof(elements, CROWD[None])
    assert iof.shape == (1, 4, 1)
    assert torch.allclose(iof[0, :, 0], torch.tensor([1.0, 0.4, 0.0, 0.0]))
    targets = [{"crowd_boxes": CROWD}, {}]
    crowd = CrowdRegions.from_targets(targets, torch.device("cpu"))
    assert crowd.ignored(elements).tolist() == [[True, False, False, False], [False] * 4]
    assert CrowdRegions.from_targets([{}, {}], torch.device("cpu")).ignored(elements) is None


def _write_crowd_dataset(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (128, 96)).save(tmp_path / "img" / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 128, "height": 96}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [80, 40, 30, 30], "iscrowd": 0},
                            {"id": 2, "image_id": 1, "category_id": 4, "bbox": [0, 0, 64, 48], "iscrowd": 1}],
            "categories": [{"id": 4, "name": "thing"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path / "ann.json", tmp_path / "img"


def test_dataset_keeps_crowds_apart_and_transforms_move_them(tmp_path):
    ann, img = _write_crowd_dataset(tmp_path)
    _, t = CocoDetection(ann, img, crowd="ignore")[0]
    assert t["boxes"].tolist() == [[80.0, 40.0, 110.0, 70.0]] and t["labels"].tolist() == [0]
    assert t["crowd_boxes"].tolist() == [[0.0, 0.0, 64.0, 48.0]]
    _, t = CocoDetection(ann, img, build_transforms(True, 64, hflip=1.0, scale_jitter=None), crowd="ignore")[0]
    assert torch.allclose(t["crowd_boxes"], torch.tensor([[32.0, 0.0, 64.0, 24.0]]))  # flipped and halved
    assert t["labels"].tolist() == [0] and len(t["boxes"]) == 1
    assert "crowd_boxes" not in CocoDetection(ann, img)[0][1] and len(CocoDetection(ann, img)[0][1]["boxes"]) == 1


def _targets(with_crowd: bool):
    t = [{"boxes": torch.tensor([[80.0, 80.0, 120.0, 120.0]]), "labels": torch.tensor([1])},
         {"boxes": torch.tensor([[10.0, 70.0, 50.0, 110.0]]), "labels": torch.tensor([0])}]
    if with_crowd:
        t[0]["crowd_boxes"] = CROWD
        t[1]["crowd_boxes"] = torch.zeros(0, 4)
    return t


@pytest.mark.parametrize("build", [build_retinanet, build_atss, build_fcos, build_dw])
def test_dense_detectors_ignore_their_elements_in_crowds(build):
    """Same positives; the negatives lose exactly the elements in the crowd of image 0, none of image 1."""
    torch.manual_seed(0)
    model = build(3).train()
    images = torch.rand(2, 3, 128, 128)
    plain, crowd = model(images, _targets(False)), model(images, _targets(True))
    assert torch.equal(plain["levels/num_pos"], crowd["levels/num_pos"])
    dropped = plain["levels/num_neg"] - crowd["levels/num_neg"]
    assert dropped.sum() > 0 and (dropped >= 0).all()
    assert all(torch.isfinite(v).all() for k, v in crowd.items() if k.startswith("loss_"))


def test_retinanet_ignores_exactly_the_anchors_mostly_inside():
    """The negatives lost are the anchors of image 0 whose intersection with the crowd box exceeds half their
    own area, counted here with torchvision's box_area (an independent IoF)."""
    model = build_retinanet(3).train()
    images = torch.rand(2, 3, 128, 128)
    plain, crowd = model(images, _targets(False)), model(images, _targets(True))
    anchors = torch.cat(model.anchor_generator([(128 // s, 128 // s) for s in model.strides], "cpu"))
    lt, rb = anchors[:, :2].clamp(min=0), torch.minimum(anchors[:, 2:], CROWD[0, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    inside = inter / box_area(anchors) > 0.5
    gt_boxes, _, gt_valid = pad_targets(_targets(False)[:1])
    assign = model.assigner.assign(anchors, gt_boxes, gt_valid)
    expected = (inside & assign.neg[0]).sum()
    assert (plain["levels/num_neg"] - crowd["levels/num_neg"]).sum() == expected


def test_rpn_never_samples_crowd_anchors_as_negatives():
    """No object: every anchor is negative. Objectness logit +8 inside the crowd, 0 elsewhere: sampling only
    outside the crowd gives BCE = ln 2 exactly, sampling inside would add ~8 per anchor."""
    anchors = AnchorGenerator((16,), octave_base_scale=2.0, scales_per_octave=1, ratios=(1.0,))
    rpn = RegionProposalNetwork(RPNHead(4, 1), anchors, num_samples=64, pos_fraction=0.5)
    a = torch.cat(anchors([(8, 8)]))  # 64 anchors on a 128 px image
    inside = box_iof(a, CROWD[None])[0, :, 0] > 0.5
    objectness = torch.where(inside, 8.0, 0.0)[None]
    gt = (torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.bool))
    crowd = CrowdRegions.from_targets([{"crowd_boxes": CROWD}], torch.device("cpu"))
    with_crowd = rpn.loss(objectness, torch.zeros(1, 64, 4), a, *gt, crowd=crowd)
    without = rpn.loss(objectness, torch.zeros(1, 64, 4), a, *gt)
    assert float(with_crowd["loss_rpn_cls"]) == pytest.approx(0.6931, abs=1e-4)
    assert float(without["loss_rpn_cls"]) > 1.0


def test_roi_sampler_skips_proposals_in_crowds():
    props = torch.tensor([[[2.0, 2.0, 30.0, 30.0], [70.0, 70.0, 90.0, 90.0], [50.0, 0.0, 90.0, 20.0]]])
    gt_boxes, gt_labels, gt_valid = pad_targets([{"boxes": torch.tensor([[100.0, 100.0, 120.0, 120.0]]),
                                                  "labels": torch.tensor([0])}])
    crowd = CrowdRegions.from_targets([{"crowd_boxes": CROWD}], torch.device("cpu"))
    s = ProposalSampler(num=8)(props, torch.ones(1, 3, dtype=torch.bool), gt_boxes, gt_labels, gt_valid, 2, crowd=crowd)
    rois = {tuple(r.tolist()) for r, v in zip(s.rois[0], s.valid[0]) if v}
    assert (2.0, 2.0, 30.0, 30.0) not in rois  # inside the crowd: not a negative
    assert {(70.0, 70.0, 90.0, 90.0), (50.0, 0.0, 90.0, 20.0)} <= rois  # IoF 0.35 with the crowd: still a negative


@pytest.mark.parametrize("build", [build_faster_rcnn, build_mimicdet])
def test_two_stage_models_train_with_crowds(build):
    torch.manual_seed(0)
    out = build(3).train()(torch.rand(2, 3, 128, 128), _targets(True))
    assert all(torch.isfinite(v).all() for k, v in out.items() if k.startswith("loss_"))

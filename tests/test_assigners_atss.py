"""ATSS assignment: a hand-computed case, the unbiased std, and batched == a per-image, per-gt loop."""
from statistics import mean, stdev

import pytest
import torch
from torchvision.ops import box_iou

from minidet.assigners import ATSSAssigner
from minidet.models import AnchorGenerator

# Level 0: four 10x10 anchors centred at (5,5), (15,5), (5,15), (15,15); level 1: one 20x20 centred at (10,10).
ANCHORS = torch.tensor([[0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20], [0, 0, 20, 20.0]])
LEVELS = [4, 1]


def test_hand_made_boxes_centre_rule_and_highest_iou():
    gts = torch.tensor([[[2, 2, 12, 11], [11, 0, 19, 4], [1, 1, 11, 10.5]]])
    # topk=2: the two level-0 anchors nearest each gt centre, plus the only level-1 anchor (a4).
    # gt0, centre (7, 6.5): squared distances a0 6.25, a1 66.25, a2 76.25, a3 136.25 -> {a0, a1, a4}
    #   IoU a0 = 8*8 / (100 + 90 - 64), a1 = 2*8 / (100 + 90 - 16), a4 = 90 / 400
    iou0 = {0: 64 / 126, 1: 16 / 174, 4: 90 / 400}
    # gt1, centre (15, 2): a1 9, a0 109, a3 169 -> {a1, a0, a4}; IoU a1 = 32/100, a0 = 0, a4 = 32/400.
    # a1 clears the threshold but its centre (15, 5) lies below the box (y2 = 4): not a positive.
    iou1 = {1: 32 / 100, 0: 0.0, 4: 32 / 400}
    # gt2, centre (6, 5.75): a0 1.5625, a1 81.5625, a2 86.5625 -> {a0, a1, a4}
    #   IoU a0 = 9*9 / (100 + 95 - 81), a1 = 1*9 / (100 + 95 - 9), a4 = 95 / 400
    iou2 = {0: 81 / 114, 1: 9 / 186, 4: 95 / 400}
    inside = {(0, 0): True, (0, 1): False, (0, 4): True, (1, 1): False, (1, 0): False, (1, 4): False,
              (2, 0): True, (2, 1): False, (2, 4): True}  # anchor centre strictly inside the gt
    claims = {}
    for g, ious in enumerate((iou0, iou1, iou2)):
        thresh = mean(ious.values()) + stdev(ious.values())
        for a, v in ious.items():
            if v >= thresh and inside[(g, a)]:
                claims.setdefault(a, []).append((v, g))
    assert claims == {0: [(64 / 126, 0), (81 / 114, 2)]}  # only a0, claimed by gt0 and gt2
    res = ATSSAssigner(topk=2).assign(ANCHORS, LEVELS, gts, torch.ones(1, 3, dtype=torch.bool))
    assert res.pos.tolist() == [[True, False, False, False, False]]
    assert res.neg.tolist() == [[False, True, True, True, True]]  # no ignored anchors in ATSS
    assert res.matched_gt[0, 0] == 2  # a0 goes to the gt it overlaps most (81/114 > 64/126)
    torch.testing.assert_close(res.max_iou[0, 0], torch.tensor(81 / 114))


def test_threshold_uses_unbiased_std():
    gt = torch.tensor([[[5, 8, 18, 20.0]]])  # centre (11.5, 14); topk=3 -> a3, a2, a1 and a4
    ious = [8 * 10 / (100 + 156 - 80), 5 * 10 / (100 + 156 - 50), 8 * 2 / (100 + 156 - 16), 156 / 400]
    a3 = ious[0]
    biased = mean(ious) + stdev(ious) * (3 / 4) ** 0.5
    assert biased < a3 < mean(ious) + stdev(ious)  # only the unbiased threshold rejects a3
    res = ATSSAssigner(topk=3).assign(ANCHORS, LEVELS, gt, torch.ones(1, 1, dtype=torch.bool))
    assert not res.pos.any()


def reference_atss(anchors, level_sizes, boxes, topk, eps=0.01):
    """Straight from Alg. 1 of the ATSS paper: one image, one gt at a time."""
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    iou = box_iou(anchors, boxes) if len(boxes) else torch.zeros(len(anchors), 0)
    best = torch.full((len(anchors),), -1.0)
    matched = torch.zeros(len(anchors), dtype=torch.long)
    for g, box in enumerate(boxes):
        dist = (centres - (box[:2] + box[2:]) / 2).norm(dim=1)
        cand, start = [], 0
        for size in level_sizes:
            cand.append(dist[start:start + size].topk(min(topk, size), largest=False).indices + start)
            start += size
        cand = torch.cat(cand)
        thresh = iou[cand, g].mean() + iou[cand, g].std()
        for a in cand.tolist():
            x, y = centres[a].tolist()
            inside = min(x - box[0], y - box[1], box[2] - x, box[3] - y) > eps
            if iou[a, g] >= thresh and inside and iou[a, g] > best[a]:
                best[a], matched[a] = iou[a, g], g
    return best >= 0, matched


def test_batched_equals_reference_loop_on_random_boxes():
    gen = torch.Generator().manual_seed(0)
    anchors_per_level = AnchorGenerator((8, 16, 32, 64, 128), octave_base_scale=8, scales_per_octave=1, ratios=(1.0,))(
        [(12, 12), (6, 6), (3, 3), (2, 2), (1, 1)])
    anchors, sizes = torch.cat(anchors_per_level), [len(a) for a in anchors_per_level]
    counts = [3, 0, 6, 1]
    gt = torch.zeros(len(counts), max(counts), 4)
    valid = torch.zeros(len(counts), max(counts), dtype=torch.bool)
    for i, n in enumerate(counts):
        xy = torch.rand(n, 2, generator=gen) * 70
        wh = 4 + torch.rand(n, 2, generator=gen) * 60
        gt[i, :n] = torch.cat([xy, xy + wh], dim=1)
        valid[i, :n] = True
    res = ATSSAssigner(topk=9).assign(anchors, sizes, gt, valid)
    assert res.pos.any()
    for i, n in enumerate(counts):
        pos, matched = reference_atss(anchors, sizes, gt[i, :n], topk=9)
        assert torch.equal(res.pos[i], pos), i
        assert torch.equal(res.neg[i], ~pos)
        assert torch.equal(res.matched_gt[i][pos], matched[pos])


@pytest.mark.cuda
def test_cuda_equals_cpu(cuda_device):
    gts = torch.tensor([[[2, 2, 12, 11], [11, 0, 19, 4], [1, 1, 11, 10.5]]])
    valid = torch.tensor([[True, True, False]])
    cpu = ATSSAssigner(topk=2).assign(ANCHORS, LEVELS, gts, valid)
    gpu = ATSSAssigner(topk=2).assign(ANCHORS.to(cuda_device), LEVELS, gts.to(cuda_device), valid.to(cuda_device))
    assert torch.equal(gpu.pos.cpu(), cpu.pos) and torch.equal(gpu.matched_gt.cpu()[cpu.pos], cpu.matched_gt[cpu.pos])

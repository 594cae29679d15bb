import pytest
import torch

from minidet.assigners import MaxIoUAssigner
from minidet.boxes import batched_box_iou


def test_thresholds_on_hand_made_boxes():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 6], [0, 0, 10, 4.5], [50, 50, 60, 60], [0, 0, 10, 2]])
    gt = torch.tensor([[[0.0, 0, 10, 10]]])
    res = MaxIoUAssigner(0.5, 0.4, allow_low_quality_matches=False).assign(anchors, gt, torch.tensor([[True]]))
    # IoUs: 1.0, 0.6, 0.45, 0, 0.2
    assert res.pos[0].tolist() == [True, True, False, False, False]
    assert res.neg[0].tolist() == [False, False, False, True, True]
    assert res.ignore[0].tolist() == [False, False, True, False, False]


def test_low_quality_match_rescues_small_object():
    anchors = torch.tensor([[0.0, 0, 32, 32], [32, 0, 64, 32]])
    gt = torch.tensor([[[2.0, 2, 10, 10]]])  # IoU 64/1024 with the first anchor only
    strict = MaxIoUAssigner(allow_low_quality_matches=False).assign(anchors, gt, torch.tensor([[True]]))
    assert not strict.pos.any()
    res = MaxIoUAssigner().assign(anchors, gt, torch.tensor([[True]]))
    assert res.pos[0].tolist() == [True, False]
    assert res.matched_gt[0, 0].item() == 0


def test_image_without_objects_is_all_negative():
    anchors = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]])
    gt = torch.zeros(1, 1, 4)
    res = MaxIoUAssigner().assign(anchors, gt, torch.tensor([[False]]))
    assert res.neg.all() and not res.pos.any()


def test_batched_equals_per_image_loop():
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(300, 2, generator=g) * 100
    anchors = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 40 + 4], 1)
    gts = []
    for n in (3, 0, 5):
        xy = torch.rand(n, 2, generator=g) * 100
        gts.append(torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 4], 1))
    padded = torch.zeros(3, 5, 4)
    valid = torch.zeros(3, 5, dtype=torch.bool)
    for i, b in enumerate(gts):
        padded[i, : len(b)] = b
        valid[i, : len(b)] = True
    a = MaxIoUAssigner()
    batched = a.assign(anchors, padded, valid)
    for i, b in enumerate(gts):
        single = a.assign(anchors, b[None] if len(b) else torch.zeros(1, 1, 4), valid[i : i + 1, : max(1, len(b))])
        assert torch.equal(batched.pos[i], single.pos[0])
        assert torch.equal(batched.neg[i], single.neg[0])
        if len(b):
            iou = batched_box_iou(anchors, b[None])[0]
            assert torch.equal(batched.matched_gt[i][batched.pos[i]], iou.argmax(1)[batched.pos[i]])


@pytest.mark.parametrize("per_image", [False, True])
def test_cache_tiles_give_the_same_assignment_as_one_map(per_image, monkeypatch):
    """Tiles of a few anchors (ties between anchors of equal IoU, padded ground truths, an empty image)
    assign exactly as the whole (B, A, G) map: the same positives, negatives, matches and IoUs."""
    import minidet.assigners.chunks as chunks

    g = torch.Generator().manual_seed(3)
    xy = torch.rand(300, 2, generator=g) * 200
    anchors = torch.cat([xy, xy + 24], 1)
    anchors = torch.cat([anchors, anchors[:40]])  # duplicates: several anchors at a ground truth's best IoU
    if per_image:
        anchors = torch.stack([anchors, anchors.flip(0), anchors + 3])
    gt_xy = torch.rand(3, 9, 2, generator=g) * 180
    gt_boxes = torch.cat([gt_xy, gt_xy + torch.rand(3, 9, 2, generator=g) * 40 + 8], 2)
    gt_valid = torch.ones(3, 9, dtype=torch.bool)
    gt_valid[1, 5:] = False
    gt_valid[2] = False
    whole = MaxIoUAssigner(tile=False).assign(anchors, gt_boxes, gt_valid)
    monkeypatch.setattr(chunks, "TILE_PAIRS", 7 * 27)  # 7 anchors per tile
    tiled = MaxIoUAssigner(tile=True).assign(anchors, gt_boxes, gt_valid)
    for name in ("pos", "neg", "matched_gt", "max_iou"):
        assert torch.equal(getattr(tiled, name), getattr(whole, name)), name
    assert whole.pos.sum() > 0 and not whole.pos[2].any()

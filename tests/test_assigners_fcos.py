"""Points and FCOS assignment: hand-made boxes (centre sampling, scale ranges, smallest area wins, ties),
scaled ranges, and batched == a per-image, per-gt loop."""
import math

import torch

from minidet.assigners import FCOSAssigner, scaled_ranges
from minidet.models import PointGenerator

INF = math.inf


def grid(sizes=((4, 4), (2, 2)), strides=(8, 16)):
    gen = PointGenerator(strides)
    pts = gen(list(sizes))
    level_sizes = [len(p) for p in pts]
    levels = torch.repeat_interleave(torch.arange(len(pts)), torch.tensor(level_sizes))
    return torch.cat(pts), gen.point_strides(level_sizes), levels


def test_points_are_cell_centres_in_level_y_x_order_and_cached():
    gen = PointGenerator((8, 16))
    pts = gen([(2, 3), (1, 1)])
    assert pts[0].tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert pts[1].tolist() == [[8, 8]]
    assert gen([(2, 3), (1, 1)]) is pts
    assert gen.point_strides([6, 1]).tolist() == [8] * 6 + [16]
    assert gen.num_anchors == 1
    points, strides, sizes = gen.grid([(2, 3), (1, 1)])
    assert points.shape == (7, 2) and strides.tolist() == [8] * 6 + [16] and sizes == [6, 1]


def test_scaled_ranges():
    assert scaled_ranges(0.5) == ((-1, 32), (32, 64), (64, 128), (128, 256), (256, INF))
    assert scaled_ranges(2.0, ((-1, 10), (10, INF))) == ((-1, 20), (20, INF))


def test_hand_made_boxes():
    points, strides, levels = grid()  # level 0: x, y in {4, 12, 20, 28}; level 1: x, y in {8, 24}
    gts = torch.tensor([[[0, 0, 16, 16], [2, 2, 30, 30], [0, 0, 20, 18.0]]])
    # gt0 (area 256): the four level-0 points (4|12, 4|12), max(l,t,r,b) = 12 <= 12: level 0's range.
    #   On level 1, (8, 8) has max 8 < 12: not level 1's.
    # gt1 (area 784): every level-0 point inside has max >= 14 > 12; centre (16, 16), radius 1.5 x 16 covers
    #   the whole box on level 1, where the four points have max 22 >= 12: positives (8|24, 8|24).
    # gt2 (area 360): level 0: (12, 12) has l = t = 12, r = 8, b = 6 -> max 12, in range; (4, 4) r = 16,
    #   (12, 4) b = 14, (4, 12) r = 16: out. Level 1: (8, 8) has r = 12 >= 12 (inclusive): in range.
    # Ambiguous: level-0 (12, 12) wanted by gt0 and gt2 -> gt0 (smaller); level-1 (8, 8) by gt1 and gt2 -> gt2.
    res = FCOSAssigner(((-1, 12), (12, INF))).assign(points, strides, levels, gts, torch.ones(1, 3, dtype=torch.bool))
    expected = {0: 0, 1: 0, 4: 0, 5: 0, 16: 2, 17: 1, 18: 1, 19: 1}  # point index -> gt
    assert res.pos[0].nonzero().flatten().tolist() == sorted(expected)
    assert {i: int(res.matched_gt[0, i]) for i in expected} == expected
    assert torch.equal(res.neg, ~res.pos)


def test_centre_sampling_radius_and_ties():
    points, strides, levels = grid(((1, 8),), (8,))  # x = 4, 12, ..., 60 at y = 4
    gts = torch.tensor([[[0, 0, 64, 8.0], [0, 0, 64, 8.0]]])  # centre x = 32; the same box twice
    valid = torch.ones(1, 2, dtype=torch.bool)
    res = FCOSAssigner(((-1, INF),), 1.5).assign(points, strides, levels, gts, valid)
    # within 1.5 x 8 = 12 px of x = 32, strictly: 28 and 36 (20 and 44 sit on the border)
    assert res.pos[0].nonzero().flatten().tolist() == [3, 4]
    assert res.matched_gt[0, 3] == 0 and res.matched_gt[0, 4] == 0  # equal areas: the lower index
    res = FCOSAssigner(((-1, INF),), None).assign(points, strides, levels, gts, valid)
    assert res.pos.all()  # the paper's rule: anywhere inside the box
    valid[0, 0] = False
    res = FCOSAssigner(((-1, INF),), 1.5).assign(points, strides, levels, gts, valid)
    assert res.matched_gt[0, 3] == 1  # padding never claims


def reference_fcos(points, strides, levels, boxes, ranges, radius):
    """One image, one point and one gt at a time, as the rules read."""
    pos = torch.zeros(len(points), dtype=torch.bool)
    matched = torch.zeros(len(points), dtype=torch.long)
    for i, ((x, y), s, lvl) in enumerate(zip(points.tolist(), strides.tolist(), levels.tolist())):
        best = INF
        for g, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            d = (x - x1, y - y1, x2 - x, y2 - y)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            near = (max(x1, cx - radius * s) < x < min(x2, cx + radius * s)
                    and max(y1, cy - radius * s) < y < min(y2, cy + radius * s))
            lo, hi = ranges[lvl]
            area = (x2 - x1) * (y2 - y1)
            if min(d) > 0 and near and lo <= max(d) <= hi and area < best:
                best, pos[i], matched[i] = area, True, g
    return pos, matched


def test_batched_equals_loop():
    torch.manual_seed(0)
    points, strides, levels = grid(((8, 8), (4, 4), (2, 2)), (8, 16, 32))
    ranges = ((-1, 16), (16, 32), (32, INF))
    xy = torch.rand(3, 6, 2) * 60
    wh = torch.rand(3, 6, 2) * 40 + 2
    gts = torch.cat([xy, xy + wh], dim=-1)
    valid = torch.tensor([[True] * 6, [True] * 3 + [False] * 3, [False] * 6])
    res = FCOSAssigner(ranges, 1.5).assign(points, strides, levels, gts, valid)
    for b in range(3):
        pos, matched = reference_fcos(points, strides, levels, gts[b][valid[b]], ranges, 1.5)
        assert torch.equal(res.pos[b], pos)
        assert torch.equal(res.matched_gt[b][pos], matched[pos])
    assert res.pos[0].sum() > 5 and not res.pos[2].any()


def test_cache_tiles_give_the_same_assignment_as_one_map(monkeypatch):
    """On a CPU the points are compared a cache-sized tile at a time: the same positives and matches as
    one map, and as the per-point loop, also when a tile boundary splits a level."""
    from minidet.assigners import chunks

    torch.manual_seed(1)
    points, strides, levels = grid(((16, 16), (8, 8), (4, 4)), (8, 16, 32))
    ranges = ((-1, 24), (24, 48), (48, INF))
    xy = torch.rand(2, 30, 2) * 120
    gts = torch.cat([xy, xy + torch.rand(2, 30, 2) * 60 + 2], dim=-1)
    valid = torch.tensor([[True] * 30, [True] * 11 + [False] * 19])
    whole = FCOSAssigner(ranges, 1.5, tile=False).assign(points, strides, levels, gts, valid)
    monkeypatch.setattr(chunks, "TILE_PAIRS", 13 * 60)  # 13 points per tile
    tiled = FCOSAssigner(ranges, 1.5, tile=True).assign(points, strides, levels, gts, valid)
    assert torch.equal(tiled.pos, whole.pos) and torch.equal(tiled.matched_gt[tiled.pos], whole.matched_gt[whole.pos])
    for b in range(2):
        pos, matched = reference_fcos(points, strides, levels, gts[b][valid[b]], ranges, 1.5)
        assert torch.equal(tiled.pos[b], pos) and torch.equal(tiled.matched_gt[b][pos], matched[pos])
    assert tiled.pos.sum() > 20

"""Samplers on constructed IoU distributions: per-bin counts, fill-up, floor group, determinism, instance caps."""
from __future__ import annotations

import pytest
import torch

from minidet.samplers import (instance_balanced_pos_mask, instance_balanced_pos_sample, iou_balanced_neg_mask,
                              iou_balanced_neg_sample, random_sample, rank_in_groups, sample_pos_neg, take_random)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_rank_in_groups_is_a_permutation_per_group():
    groups = torch.tensor([[0, 1, 0, 1, 2, 0, 2, 1]])
    member = torch.tensor([[1, 1, 1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    rank = rank_in_groups(groups, member, 3, gen())
    for g, size in ((0, 3), (1, 2), (2, 2)):
        got = sorted(rank[0][(groups[0] == g) & member[0]].tolist())
        assert got == list(range(size))
    assert rank[0, 3] == 8  # non-member


def test_take_random_quota_and_subset():
    member = torch.rand(4, 100, generator=gen()) < 0.3
    quota = torch.tensor([0, 5, 1000, 10])
    out = take_random(member, quota, gen(1))
    assert (out & ~member).sum() == 0
    assert out.sum(1).tolist() == [0, 5, int(member[2].sum()), 10]


def test_random_sample_is_uniform():
    member = torch.ones(1, 10, dtype=torch.bool)
    counts = torch.zeros(10)
    g = gen(2)
    for _ in range(2000):
        counts += random_sample(member, 3, g)[0].float()
    assert torch.allclose(counts / 2000, torch.full((10,), 0.3), atol=0.04)


def test_sample_pos_neg_split():
    pos = torch.zeros(2, 50, dtype=torch.bool)
    pos[0, :40] = True
    pos[1, :3] = True
    sampled, num_neg, quota = sample_pos_neg(pos, ~pos, 16, 0.5, gen())
    assert sampled.sum(1).tolist() == [8, 3] and num_neg.tolist() == [8, 13] and quota.tolist() == [8, 8]


def constructed_ious():
    """600 easy negatives (IoU < 0.1), 60 in [0.1, 0.3), 15 in [0.3, 0.45]: the top bin is short."""
    g = gen(5)
    return torch.cat([torch.rand(600, generator=g) * 0.1, 0.1 + torch.rand(60, generator=g) * 0.2,
                      0.3 + torch.rand(15, generator=g) * 0.15])


def test_iou_balanced_per_bin_counts_and_fill_up():
    ious = constructed_ious()
    idx = iou_balanced_neg_sample(ious, 90, num_bins=3, generator=gen())
    assert len(idx) == 90 and len(set(idx.tolist())) == 90
    lo, hi = 0.0, float(ious.max())
    edges = [lo + k * (hi - lo) / 3 for k in range(4)]
    per_bin = [int(((ious[idx] >= edges[k]) & (ious[idx] < edges[k + 1] if k < 2 else ious[idx] <= hi)).sum()) for k in range(3)]
    avail = [int(((ious >= edges[k]) & (ious < edges[k + 1] if k < 2 else ious <= hi)).sum()) for k in range(3)]
    # every bin gets its 30, or all it has when it has fewer; the shortfall is filled from the others
    for got, have in zip(per_bin, avail):
        assert got >= min(30, have)
    short = [k for k in range(3) if avail[k] < 30]
    assert short, "the construction must leave one bin short"
    for k in short:
        assert per_bin[k] == avail[k]
    # the hard negatives are strongly over-represented compared with their share of the candidates
    assert (ious[idx] > 0.1).float().mean() > 2 * (ious > 0.1).float().mean()


def test_iou_balanced_deterministic_with_generator():
    ious = constructed_ious()
    a = iou_balanced_neg_sample(ious, 64, generator=gen(7))
    b = iou_balanced_neg_sample(ious, 64, generator=gen(7))
    c = iou_balanced_neg_sample(ious, 64, generator=gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_iou_balanced_takes_all_when_few():
    ious = torch.tensor([0.0, 0.2, 0.4])
    assert iou_balanced_neg_sample(ious, 10).tolist() == [0, 1, 2]


def test_iou_balanced_one_bin_is_random():
    ious = constructed_ious()
    idx = iou_balanced_neg_sample(ious, 50, num_bins=1, generator=gen())
    assert len(idx) == 50


def test_floor_group():
    """floor_thr = 0.05, floor_fraction = 0.5: half the quota from IoU < 0.05, binned sampling above it."""
    ious = constructed_ious()
    idx = iou_balanced_neg_sample(ious, 80, floor_thr=0.05, floor_fraction=0.5, generator=gen())
    sel = ious[idx]
    assert len(idx) == 80
    assert int((sel < 0.05).sum()) == 40
    assert int((sel >= 0.05).sum()) == 40
    # floor_thr = 0: the floor group is the exact zeros
    ious0 = torch.cat([torch.zeros(100), torch.rand(100, generator=gen(3)) * 0.4 + 0.01])
    idx0 = iou_balanced_neg_sample(ious0, 40, floor_thr=0.0, floor_fraction=0.25, generator=gen())
    assert int((ious0[idx0] == 0).sum()) == 10


def test_reference_bin_range_leaves_top_bin_empty():
    """mmdetection's bins reach the highest IoU of all candidates (1.0 with ground truths as proposals):
    with K = 3 the negatives (IoU < 0.5) never reach the top bin [0.67, 1), so only two bins get quota and
    the rest is filled at random; minidet's default splits the negatives' own range into three."""
    g = gen(11)
    ious = torch.cat([torch.rand(3000, generator=g) * 0.1, 0.1 + torch.rand(300, generator=g) * 0.39])
    n = 300
    ours = ious[iou_balanced_neg_sample(ious, n, generator=gen(1))]
    ref = ious[iou_balanced_neg_sample(ious, n, generator=gen(1), bin_upper=1.0)]
    # reference bins [0, .33), [.33, .67): 100 each wanted; [.33, .49) has fewer than 100 candidates
    in_mid_ref = int(((ious >= 1 / 3) & (ious < 2 / 3)).sum())
    assert int((ref >= 1 / 3).sum()) == min(100, in_mid_ref)
    # ours: top third of [0, 0.49] is [0.327, 0.49]; it is sampled to its quota of 100 too, but the middle
    # bin [0.163, 0.327) gets its own 100 where the reference draws most from [0, 0.33) at random
    top = float(ious.max())
    mid = ((ours >= top / 3) & (ours < 2 * top / 3)).sum()
    assert int(mid) == 100
    assert (ref < 0.1).float().mean() > (ours < 0.1).float().mean()


def test_code_form_floor_is_the_zeros_and_only_fills():
    """The authors' sampler from its second call on (floor_thr -1 -> 0; bins up to the highest IoU of all
    candidates, 1 with ground truths added): IoU-0 negatives are a floor drawn from only when the IoU > 0
    negatives run short. With floor_thr = -1 (its first call) the zeros sit in the first bin and are drawn."""
    g = gen(5)
    ious = torch.cat([torch.zeros(2000), 0.01 + torch.rand(400, generator=g) * 0.48])
    n = 300
    code = ious[iou_balanced_neg_sample(ious, n, floor_thr=0.0, bin_upper=1.0, generator=gen(1))]
    first_call = ious[iou_balanced_neg_sample(ious, n, floor_thr=-1.0, bin_upper=1.0, generator=gen(1))]
    assert len(code) == len(first_call) == n
    assert int((code == 0).sum()) == 0  # 400 IoU > 0 negatives cover the 300 wanted
    # by hand: bins [0, 1/3), [1/3, 2/3), [2/3, 1) want 100 each; the IoU > 0 negatives of [0, 1/3) give 100,
    # those of [1/3, 0.49] give min(100, count); the top bin has none; the shortfall comes from IoU > 0 negatives
    mid = int(((ious >= 1 / 3) & (ious < 2 / 3)).sum())
    assert int((code >= 1 / 3).sum()) >= min(100, mid)
    assert int((first_call == 0).sum()) > 0  # the first call bins the zeros with everything below 1/3
    # few IoU > 0 negatives: all of them, then the floor fills the rest
    few = torch.cat([torch.zeros(2000), torch.full((50,), 0.2)])
    sel = few[iou_balanced_neg_sample(few, n, floor_thr=0.0, bin_upper=1.0, generator=gen(2))]
    assert int((sel > 0).sum()) == 50 and int((sel == 0).sum()) == n - 50


def test_proposal_sampler_forms():
    from minidet.models import build_faster_rcnn
    from minidet.samplers.proposal_sampler import ProposalSampler

    paper = ProposalSampler.iou_balanced_form("paper", num=64)
    code = ProposalSampler.iou_balanced_form("code", num=64, pos_sampler="instance_balanced")
    assert (paper.neg_sampler, paper.floor_thr, paper.bin_range) == ("iou_balanced", -1.0, "negatives")
    assert (code.floor_thr, code.bin_range, code.num, code.pos_sampler) == (0.0, "all", 64, "instance_balanced")
    with pytest.raises(ValueError, match="form"):
        ProposalSampler.iou_balanced_form("mmdet")
    s = build_faster_rcnn(3, iou_balanced="code").sampler
    assert (s.neg_sampler, s.floor_thr, s.bin_range) == ("iou_balanced", 0.0, "all")
    s = build_faster_rcnn(3, iou_balanced=True).sampler
    assert (s.neg_sampler, s.floor_thr, s.bin_range) == ("iou_balanced", -1.0, "negatives")
    assert build_faster_rcnn(3).sampler.neg_sampler == "random"


def test_batched_mask_matches_rows():
    ious = torch.stack([constructed_ious(), constructed_ious().flip(0)])
    cand = torch.ones_like(ious, dtype=torch.bool)
    cand[1, :100] = False
    m = iou_balanced_neg_mask(ious, cand, torch.tensor([50, 70]), generator=gen())
    assert m.sum(1).tolist() == [50, 70] and not (m & ~cand).any()


def test_instance_balanced_caps_and_fill():
    gt = torch.tensor([0] * 50 + [1] * 3 + [2] * 10)
    idx = instance_balanced_pos_sample(gt, 20, gen())
    counts = torch.bincount(gt[idx], minlength=3).tolist()
    # cap round(20 / 3) + 1 = 8 per ground truth: 8 + 3 + 8 = 19, one more filled at random from the rest
    assert sum(counts) == 20 and len(set(idx.tolist())) == 20
    assert counts[1] == 3 and counts[2] >= 8 and counts[0] >= 8 and max(counts) <= 9


def test_instance_balanced_all_when_few_and_trim():
    assert instance_balanced_pos_sample(torch.tensor([0, 0, 1]), 5).tolist() == [0, 1, 2]
    # 10 ground truths, 4 wanted: cap round(4 / 10) + 1 = 1 each gives 10 > 4, trimmed at random to 4
    gt = torch.arange(10).repeat_interleave(3)
    idx = instance_balanced_pos_sample(gt, 4, gen())
    assert len(idx) == 4 and torch.bincount(gt[idx]).max() == 1


def test_instance_balanced_batched_mask():
    matched = torch.tensor([[0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0, 0, 0]])
    pos = torch.ones_like(matched, dtype=torch.bool)
    m = instance_balanced_pos_mask(matched, pos, 4, 3, gen())
    assert m.sum(1).tolist() == [4, 4]
    # image 0: cap round(4 / 3) + 1 = 2 per ground truth -> 2 + 2 + 2 = 6 > 4, trimmed; no gt above 2
    assert torch.bincount(matched[0][m[0]], minlength=3).max() <= 2


@pytest.mark.cuda
def test_samplers_cuda_match_cpu(cuda_device):
    ious = constructed_ious()
    a = iou_balanced_neg_sample(ious, 90, generator=gen(3))
    b = iou_balanced_neg_sample(ious.to(cuda_device), 90, generator=gen(3))
    assert torch.equal(a, b.cpu())
    gt = torch.tensor([0] * 50 + [1] * 3 + [2] * 10)
    assert torch.equal(instance_balanced_pos_sample(gt, 20, gen(4)), instance_balanced_pos_sample(gt.to(cuda_device), 20, gen(4)).cpu())

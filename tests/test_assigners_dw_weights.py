"""Dual Weighting weights: hand-computed centre prior, positive weights (code and paper forms), P_neg
(both forms), per-class P_neg, the negative weight's gradient, and batched == a per-image, per-gt loop."""
import math

import pytest
import torch

from minidet.assigners import (center_prior, consistency, dw_neg_weight, dw_pos_weight, inside_boxes,
                               localization_score, neg_prob, neg_prob_per_class, paper_consistency)

E = math.exp


def test_center_prior_by_hand():
    points = torch.tensor([[16.0, 16], [24, 16], [24, 24], [28, 16], [36, 16], [24, 16]])
    strides = torch.tensor([8.0, 8, 8, 8, 8, 4])
    gt = torch.tensor([[[0.0, 0, 32, 32]]])  # centre (16, 16)
    valid = torch.ones(1, 1, dtype=torch.bool)
    g = lambda d: E(-d * d / (2 * 1.11**2))  # one axis, distance d in strides
    # the centre; one stride right; one stride right and down; 1.5 strides; outside the box; 2 strides at stride 4
    expected = [1.0, g(1), g(1) ** 2, g(1.5), 0.0, g(2)]
    torch.testing.assert_close(center_prior(points, strides, gt, valid)[0, :, 0], torch.tensor(expected))
    assert g(2) < 0.3 < g(1.5)  # binarised at 0.3: the last point drops out
    hard = center_prior(points, strides, gt, valid, soft=False)[0, :, 0]
    assert hard.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert not center_prior(points, strides, gt, ~valid).any()  # padding has no prior


def test_localization_and_consistency():
    giou = torch.tensor([0.0, 0.2, 1.0])
    torch.testing.assert_close(localization_score(giou), torch.tensor([1.0, E(-1.0), E(-5.0)]))
    torch.testing.assert_close(consistency(torch.tensor([0.5]), torch.tensor([0.4])), torch.tensor([0.2]))


def test_paper_consistency_by_hand():
    # t = s^beta u^(1 - beta): s = 0.64, u = 0.25, beta = 0.5 -> 0.8 * 0.5; beta = 1 is the score alone
    torch.testing.assert_close(paper_consistency(torch.tensor([0.64]), torch.tensor([0.25]), 0.5), torch.tensor([0.4]))
    torch.testing.assert_close(paper_consistency(torch.tensor([0.3]), torch.tensor([0.9]), 1.0), torch.tensor([0.3]))
    torch.testing.assert_close(paper_consistency(torch.tensor([0.5]), torch.tensor([0.0]), 0.8), torch.tensor([0.0]))


@pytest.mark.parametrize("form", ["code", "paper"])
def test_pos_weight_by_hand(form):
    p_cls = torch.tensor([0.5, 0.8, 0.2, 0.9]).view(1, 4, 1)
    p_loc = torch.tensor([1.0, 0.5, 1.0, 1.0]).view(1, 4, 1)  # the code's localisation score
    iou = torch.tensor([0.9, 0.6, 0.5, 0.95]).view(1, 4, 1)  # the paper's u
    prior = torch.tensor([1.0, 0.5, 0.25, 0.0]).view(1, 4, 1)  # the last point is outside the prior
    if form == "code":  # v = p_cls p_loc; e^{5v} v P over e^{3v} v P
        v = [0.5, 0.4, 0.2]
        num = [E(5 * v[0]) * v[0] * 1.0, E(5 * v[1]) * v[1] * 0.5, E(5 * v[2]) * v[2] * 0.25]
        den = E(3 * v[0]) * v[0] * 1.0 + E(3 * v[1]) * v[1] * 0.5 + E(3 * v[2]) * v[2] * 0.25
        consist = consistency(p_cls, p_loc)
    else:  # t = s^0.8 u^0.2; e^{5t} t P over the sum of the same
        t = [0.5**0.8 * 0.9**0.2, 0.8**0.8 * 0.6**0.2, 0.2**0.8 * 0.5**0.2]
        num = [E(5 * t[0]) * t[0] * 1.0, E(5 * t[1]) * t[1] * 0.5, E(5 * t[2]) * t[2] * 0.25]
        den = sum(num)
        consist = paper_consistency(p_cls, iou, beta=0.8)
    w = dw_pos_weight(consist.requires_grad_(), prior, form=form)
    torch.testing.assert_close(w.flatten(), torch.tensor([n / den for n in num] + [0.0]))
    assert not w.requires_grad
    if form == "paper":
        torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    else:
        assert w.sum() > 1  # exponent 5 over 3
    with pytest.raises(ValueError, match="form"):
        dw_pos_weight(consist, prior, form="mmdet")
    # a ground truth without candidates (prior 0 everywhere) gets no positive weight in either form
    assert dw_pos_weight(consist, torch.zeros_like(prior), form=form).eq(0).all()


def paper_p_neg(x: float, theta: float = 0.5, upper: float = 0.95, gamma1: float = 2.0) -> float:
    """The paper's fixed curve, by hand: 1 below theta, k x^gamma1 + b through (theta, 1) and (upper, 0), 0 above."""
    if x < theta:
        return 1.0
    if x > upper:
        return 0.0
    k = 1 / (theta**gamma1 - upper**gamma1)
    return k * x**gamma1 - k * upper**gamma1


def code_p_neg(ious: list[float], cand: list[bool]) -> list[float]:
    """The authors' normalize() of dw_head.py over one ground truth's candidates, by hand."""
    t = [(x**2 - 1) / (0.5**2 - 1) for x, c in zip(ious, cand) if c]
    t_min, t_max = min(t), min(1.0, max(t))
    out = []
    for x, c in zip(ious, cand):
        out.append(1.0 if not c or x < 0.5 else ((x**2 - 1) / (0.5**2 - 1) - t_min + 1e-12) / (t_max - t_min + 1e-12))
    return out


CASES = {
    "one candidate below theta": ([0.9, 0.7, 0.3, 0.6, 0.8], [True, True, True, True, False]),
    "every candidate >= theta": ([0.9, 0.7, 0.6], [True, True, True]),
    "exactly theta and exactly 0.95": ([0.5, 0.95, 0.97, 0.2], [True, True, True, True]),
    "all >= theta, worst exactly theta": ([0.5, 0.8, 0.95], [True, True, True]),
}


@pytest.mark.parametrize("case", CASES)
def test_neg_prob_paper_and_code_by_hand(case):
    ious, cand = CASES[case]
    iou = torch.tensor(ious).view(1, -1, 1)
    c = torch.tensor(cand).view(1, -1, 1)
    paper = [paper_p_neg(x) if ok else 1.0 for x, ok in zip(ious, cand)]
    torch.testing.assert_close(neg_prob(iou, c, form="paper").flatten(), torch.tensor(paper), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(neg_prob(iou, c).flatten(), torch.tensor(code_p_neg(ious, cand)), atol=1e-6, rtol=1e-5)
    none = torch.zeros_like(c)  # no candidate at all: P_neg is 1 everywhere in both forms
    assert neg_prob(iou, none).eq(1).all() and neg_prob(iou, none, form="paper").eq(1).all()


def test_neg_prob_edge_values():
    cand = torch.ones(1, 4, 1, dtype=torch.bool)
    # the paper: theta -> 1, 0.95 -> 0, beyond 0.95 -> 0, whatever the other candidates
    iou = torch.tensor([0.5, 0.95, 0.99, 0.49]).view(1, 4, 1)
    torch.testing.assert_close(neg_prob(iou, cand, form="paper").flatten(), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    # the code: the best candidate -> 0 up to EPS (here 0.99, not 0.95); exactly theta, with one below -> 1
    code = neg_prob(iou, cand).flatten()
    t = lambda x: (x**2 - 1) / (0.25 - 1)  # noqa: E731
    assert code[2] < 1e-9 and code[0] == 1 and code[3] == 1
    torch.testing.assert_close(code[1], torch.tensor((t(0.95) - t(0.99)) / (1 - t(0.99))))
    # one ground truth whose candidates all have IoU >= theta: the code maps the worst (0.6) to 1, the paper does not
    iou = torch.tensor([0.6, 0.7, 0.9]).view(1, 3, 1)
    cand = torch.ones(1, 3, 1, dtype=torch.bool)
    assert neg_prob(iou, cand)[0, 0, 0] == 1 and neg_prob(iou, cand, form="paper")[0, 0, 0] < 1
    # the paper's curve is per point: adding a candidate changes nothing for the others
    more = torch.tensor([0.6, 0.7, 0.9, 0.3]).view(1, 4, 1)
    torch.testing.assert_close(neg_prob(more, torch.ones(1, 4, 1, dtype=torch.bool), form="paper")[0, :3],
                               neg_prob(iou, cand, form="paper")[0])


def test_neg_prob_per_class_takes_the_minimum_and_ignores_padding():
    p_neg = torch.tensor([[[0.2, 0.6, 0.0], [1.0, 0.3, 0.1]]])  # (B=1, A=2, G=3)
    labels = torch.tensor([[1, 1, -1]])
    out = neg_prob_per_class(p_neg, labels, num_classes=3)
    torch.testing.assert_close(out, torch.tensor([[[1.0, 0.2, 1.0], [1.0, 0.3, 1.0]]]))


def test_neg_weight_gradient_flows_through_the_score_only():
    p_neg = torch.tensor([0.5], requires_grad=True)
    s = torch.tensor([0.4], requires_grad=True)
    w = dw_neg_weight(p_neg, s)
    torch.testing.assert_close(w, torch.tensor([0.08]))
    w.sum().backward()
    torch.testing.assert_close(s.grad, torch.tensor([0.4]))  # d(0.5 s^2)/ds = s
    assert p_neg.grad is None


def reference_weights(points, strides, boxes, labels, iou, p_cls, p_loc, num_classes, form):
    """One image, one gt at a time, in the order of the authors' code (dw_head.py)."""
    a = len(points)
    w_pos = torch.zeros(a, len(boxes))
    p_neg = torch.ones(a, num_classes)
    for g, (box, label) in enumerate(zip(boxes, labels.tolist())):
        inside = ((points - box[:2]).min(1).values > 0) & ((box[2:] - points).min(1).values > 0)
        d = (points - (box[:2] + box[2:]) / 2) / strides[:, None]
        prior = torch.exp(-d**2 / (2 * 1.11**2)).prod(1) * inside
        v = p_cls[:, g] * p_loc[:, g]
        den_mu = 3.0 if form == "code" else 5.0
        w_pos[:, g] = torch.exp(5 * v) * v * prior / (torch.exp(den_mu * v) * v * prior).sum().clamp(min=1e-12)
        if inside.any():
            x = iou[inside, g]
            t = (x**2 - 1) / (0.5**2 - 1)
            y = (t - t.min() + 1e-12) / (min(1.0, float(t.max())) - t.min() + 1e-12)
            y[x < 0.5] = 1
            idx = inside.nonzero().flatten()
            p_neg[idx, label] = torch.minimum(p_neg[idx, label], y)
    return w_pos, p_neg


@pytest.mark.parametrize("form", ["code", "paper"])
def test_batched_equals_per_gt_loop(form):
    torch.manual_seed(0)
    points = torch.rand(40, 2) * 64
    strides = torch.tensor([8.0, 16.0]).repeat_interleave(20)
    xy = torch.rand(3, 5, 2) * 40
    boxes = torch.cat([xy, xy + torch.rand(3, 5, 2) * 40 + 4], dim=-1)
    labels = torch.randint(0, 2, (3, 5))  # two classes: several gts share one
    valid = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])
    labels = torch.where(valid, labels, -1)
    iou = torch.rand(3, 40, 5) * inside_boxes(points, boxes, valid)
    p_cls, p_loc = torch.rand(3, 40, 5), torch.rand(3, 40, 5)
    prior = center_prior(points, strides, boxes, valid)
    w = dw_pos_weight(consistency(p_cls, p_loc), prior, form=form)
    p_neg = neg_prob_per_class(neg_prob(iou, inside_boxes(points, boxes, valid)), labels, 2)
    for b in range(3):
        n = int(valid[b].sum())
        ref_w, ref_neg = reference_weights(points, strides, boxes[b, :n], labels[b, :n], iou[b], p_cls[b], p_loc[b], 2, form)
        torch.testing.assert_close(w[b, :, :n], ref_w)
        torch.testing.assert_close(w[b, :, n:], torch.zeros(40, 5 - n))
        torch.testing.assert_close(p_neg[b], ref_neg)
    assert (p_neg[0] < 1).any() and p_neg[2].eq(1).all()


@pytest.mark.cuda
def test_cuda_weights_equal_cpu(cuda_device):
    torch.manual_seed(0)
    points, strides = torch.rand(30, 2) * 64, torch.full((30,), 8.0)
    boxes = torch.tensor([[[4.0, 4, 40, 50], [20, 10, 60, 30]]])
    valid, labels = torch.ones(1, 2, dtype=torch.bool), torch.tensor([[0, 0]])
    p_cls, p_loc, iou = torch.rand(1, 30, 2), torch.rand(1, 30, 2), torch.rand(1, 30, 2)

    def weights(dev):
        pr = center_prior(points.to(dev), strides.to(dev), boxes.to(dev), valid.to(dev))
        inside = inside_boxes(points.to(dev), boxes.to(dev), valid.to(dev))
        return (dw_pos_weight(consistency(p_cls.to(dev), p_loc.to(dev)), pr),
                neg_prob_per_class(neg_prob(iou.to(dev), inside), labels.to(dev), 2))

    for cpu, gpu in zip(weights("cpu"), weights(cuda_device)):
        torch.testing.assert_close(gpu.cpu(), cpu)

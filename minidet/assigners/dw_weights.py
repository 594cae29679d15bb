"""The weights of Dual Weighting label assignment (Li et al., "A Dual Weighting Label Assignment Scheme
for Object Detection", CVPR 2022, Sec. 3; the authors' code ``strongwolf/DW``, ``dw_head.py``).

https://arxiv.org/abs/2203.09730

Every point ``i`` inside a ground truth ``g`` is both a positive of ``g`` with weight ``w_pos`` and a
negative of ``g``'s class with weight ``w_neg``; the two are set separately:

* a centre prior (:func:`center_prior`) limits the positives to points near the object's centre;
* ``w_pos`` (:func:`dw_pos_weight`) grows with the consistency of the point's classification and
  localisation (:func:`consistency` as the authors' code, :func:`paper_consistency` as the paper),
  normalised over the ground truth's points;
* ``w_neg = P_neg x I_neg`` (:func:`dw_neg_weight`): the probability that the point is a negative,
  from the IoU of its predicted box (:func:`neg_prob`), times its importance as a negative, ``s^2``.

Each function works on a whole padded batch: ``(B, A, G)`` tensors for ``B`` images, ``A`` points and
``G`` ground truths (masked by validity), where the authors loop over images and ground truths. ``w_pos``
and ``P_neg`` are targets, computed without gradient; ``I_neg`` keeps its gradient (like focal loss's
modulating factor, and as the authors' code). The equation numbers of the paper are not quoted here:
the formulas are named by the subsection that defines them.
"""
from __future__ import annotations

import torch
from torch import Tensor

from minidet.assigners.fcos import ltrb_targets

EPS = 1e-12  # the authors' EPS in both normalisations
FORMS = ("code", "paper")


def inside_boxes(points: Tensor, gt_boxes: Tensor, gt_valid: Tensor) -> Tensor:
    """``(B, A, G)`` bool: point ``a`` lies strictly inside valid ground truth ``g`` (all of FCOS's
    ``l, t, r, b > 0``). DW's candidate set of each ground truth. ``points`` ``(A, 2)``, ``gt_boxes``
    ``(B, G, 4)``, ``gt_valid`` ``(B, G)``."""
    return (ltrb_targets(points, gt_boxes).min(-1).values > 0) & gt_valid[:, None]


@torch.no_grad()
def center_prior(points: Tensor, strides: Tensor, gt_boxes: Tensor, gt_valid: Tensor, sigma: float = 1.11,
                 mean: float = 0.0, soft: bool = True, threshold: float = 0.3) -> Tensor:
    """Centre prior of every point for every ground truth ("prior weighting" in Sec. 3):

    .. math::
        P(i, g) = \\mathbb{1}[i \\in g]\\; \\prod_{k \\in \\{x, y\\}}
        \\exp\\Big(-\\frac{\\big((p^k_i - c^k_g)/s_i - \\mu\\big)^2}{2 \\sigma^2}\\Big)

    a Gaussian of the point-to-centre distance measured in the point's stride ``s_i``, zero outside the
    box. The authors' code keeps learnable-looking per-class ``mu = 0``, ``sigma = 1.11`` that are frozen
    (``requires_grad=False``), so one pair for all classes is the same thing. ``soft=False`` binarises:
    ``1`` where the Gaussian exceeds ``threshold`` (0.3), else 0.

    Args:
        points: ``(A, 2)`` xy; ``strides``: ``(A,)``; ``gt_boxes``: ``(B, G, 4)``; ``gt_valid``: ``(B, G)``.

    Returns:
        ``(B, A, G)`` float in ``[0, 1]``.
    """
    centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # (B, G, 2)
    d = (points[None, :, None] - centre[:, None]) / strides[None, :, None, None] - mean  # (B, A, G, 2)
    prior = torch.exp(-d.square() / (2 * sigma**2)).prod(-1)
    if not soft:
        prior = (prior > threshold).to(prior.dtype)
    return torch.where(inside_boxes(points, gt_boxes, gt_valid), prior, 0.0)


def localization_score(giou_loss: Tensor, beta: float = 5.0) -> Tensor:
    """:math:`p_{loc} = e^{-\\beta \\ell_{reg}}` with ``ell_reg`` the GIoU loss (Sec. 3, "positive
    weighting"; ``beta = 5`` as the authors): the localisation quality in ``(0, 1]``, differentiable."""
    return torch.exp(-beta * giou_loss)


def consistency(p_cls: Tensor, p_loc: Tensor) -> Tensor:
    """The authors' code's consistency degree :math:`v = p_{cls} \\cdot p_{loc}`, with
    :math:`p_{loc} = e^{-5\\,\\ell_{GIoU}}` (:func:`localization_score`): high only where the point both
    classifies and localises ``g`` well. Any broadcastable shapes. The paper's is :func:`paper_consistency`."""
    return p_cls * p_loc


def paper_consistency(p_cls: Tensor, iou: Tensor, beta: float = 0.8) -> Tensor:
    """The paper's consistency degree (Sec. 3, "positive weighting function"):

    .. math:: t = s^{\\beta} \\cdot u^{1 - \\beta}

    with ``s`` the score of ``g``'s class and ``u`` the IoU of the point's predicted box with ``g``; ``beta``
    balances the two (minidet's default 0.8 is a setting of minidet's). Any broadcastable shapes; ``iou``
    is clamped at 0 so that ``u^{1 - beta}`` stays real."""
    return p_cls.clamp(min=0) ** beta * iou.clamp(min=0) ** (1 - beta)


@torch.no_grad()
def dw_pos_weight(v: Tensor, prior: Tensor, mu: float = 5.0, form: str = "code", mu_denominator: float = 3.0) -> Tensor:
    """Positive weight of every point for every ground truth (Sec. 3, "positive weighting function"), from
    a consistency degree ``v`` (:func:`consistency` for the code, :func:`paper_consistency` for the paper):

    .. math::
        w^{pos}(i, g) = \\frac{e^{\\mu v_{ig}}\\, v_{ig}\\, P(i, g)}{\\sum_{j} e^{\\mu' v_{jg}}\\, v_{jg}\\, P(j, g)}

    with ``P`` the :func:`center_prior`; the sum runs over the points.

    * ``form="paper"``: ``mu' = mu``, so the weights of a ground truth sum to 1: the paper's
      ``w_pos = e^{mu t} t`` normalised over the candidates. The paper's formula has no centre prior: it
      leaves implicit how the candidates are weighted. ``P`` stands in for that; with the binary prior at
      threshold 0 (``soft_prior=False, prior_threshold=0`` in :class:`~minidet.models.DualWeighting`) it is
      1 on every point inside the box and nothing else.
    * ``form="code"`` (default): the authors' code (``dw_head.py``, ``_loss_single``) uses ``mu = 5`` above
      and ``mu' = 3`` below, so the weights sum to more than 1 (up to ``e^{2}`` for a perfectly consistent
      point) and grow as training makes ``v`` larger: an implicit schedule that strengthens the positive
      loss late in training. It multiplies by the soft centre prior. The default is the code because it is
      what produced the published numbers.

    Args:
        v: ``(B, A, G)`` consistency degree of each point with each ground truth.
        prior: ``(B, A, G)`` centre prior (0 outside the box and on padding).
        mu, mu_denominator: the exponents (``mu_denominator`` only for ``form="code"``).

    Returns:
        ``(B, A, G)`` weights, without gradient; 0 wherever the prior is 0 (a ground truth without
        candidates gets no positive weight, as in the authors' code).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    v = v.float()
    num = torch.exp(mu * v) * v * prior
    den = num if form == "paper" else torch.exp(mu_denominator * v) * v * prior
    return num / den.sum(dim=1, keepdim=True).clamp(min=EPS)


@torch.no_grad()
def neg_prob(iou: Tensor, candidates: Tensor, iou_threshold: float = 0.5, gamma1: float = 2.0,
             form: str = "code", iou_upper: float = 0.95) -> Tensor:
    """Probability that a point is a negative of ``g`` (Sec. 3, "negative weighting function"), from the
    IoU of its predicted box with ``g``; 1 off ``g``'s candidates and wherever ``IoU < theta``.

    ``form="paper"``: a fixed decreasing curve, the same for every ground truth,

    .. math::
        P_{neg}(i, g) = \\begin{cases} 1 & \\mathrm{IoU} < \\theta \\\\
        k\\,\\mathrm{IoU}^{\\gamma_1} + b & \\theta \\le \\mathrm{IoU} \\le u \\\\
        0 & \\mathrm{IoU} > u \\end{cases}, \\qquad
        k = \\frac{1}{\\theta^{\\gamma_1} - u^{\\gamma_1}},\\ b = -k\\,u^{\\gamma_1}

    through ``(theta, 1)`` and ``(u, 0)``, ``theta = 0.5``, ``u = 0.95`` (``iou_upper``).

    ``form="code"`` (default; the authors' ``dw_head.py``): the curve
    :math:`t(x) = \\frac{x^{\\gamma_1} - 1}{\\theta^{\\gamma_1} - 1}` through ``(theta, 1)`` and ``(1, 0)``,
    rescaled over ``g``'s candidates,

    .. math::
        P_{neg}(i, g) = \\frac{t(\\mathrm{IoU}_{ig}) - t_{min} + \\epsilon}{t_{max} - t_{min} + \\epsilon}
        \\quad (\\mathrm{IoU}_{ig} \\ge \\theta), \\qquad t_{min} = \\min_j t_j,\\ t_{max} = \\min(1, \\max_j t_j)

    (``j`` over the candidates, ``epsilon = 1e-12``): the best candidate of ``g`` always gets 0 (up to
    ``epsilon``), and when
    some candidate has ``IoU < theta`` (``t > 1``), ``t_max = 1`` maps ``theta`` to 1; when every candidate
    has ``IoU >= theta`` the worst of them gets 1 instead. The default is the code, which produced the
    published results.

    Args:
        iou: ``(B, A, G)`` IoU of each point's predicted box with each ground truth.
        candidates: ``(B, A, G)`` bool, the points that may be positives of ``g`` (inside the box).
        iou_threshold: ``theta`` (0.5); ``gamma1``: the exponent (2); ``iou_upper``: ``u`` of the paper form.

    Returns:
        ``(B, A, G)`` in ``[0, 1]``, 1 outside the candidates; without gradient.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    x = iou.float()
    if form == "paper":
        lo, hi = iou_threshold**gamma1, iou_upper**gamma1
        p = ((x**gamma1 - hi) / (lo - hi)).clamp(0.0, 1.0)  # k x^gamma1 + b, 0 beyond u
    else:
        t = (x**gamma1 - 1) / (iou_threshold**gamma1 - 1)  # (B, A, G)
        inf = torch.full_like(t, torch.inf)
        t_min = torch.where(candidates, t, inf).min(dim=1, keepdim=True).values  # (B, 1, G)
        t_max = torch.where(candidates, t, -inf).max(dim=1, keepdim=True).values.clamp(max=1.0)
        p = (t - t_min + EPS) / (t_max - t_min + EPS)
    return torch.where(candidates & (iou >= iou_threshold), p, 1.0)


@torch.no_grad()
def neg_prob_per_class(p_neg: Tensor, gt_labels: Tensor, num_classes: int) -> Tensor:
    """From ``P_neg`` per ground truth to ``P_neg`` per class: point ``i`` is a negative of class ``c``
    with probability ``min_g P_neg(i, g)`` over the ground truths ``g`` of class ``c`` (1 for classes
    without one). Where two same-class ground truths share a point, the authors' code keeps whichever
    write lands last; the minimum (the strongest positive claim wins) does not depend on order.

    Args:
        p_neg: ``(B, A, G)`` from :func:`neg_prob` (1 on padding columns).
        gt_labels: ``(B, G)`` int64 class of each ground truth (``-1`` on padding).

    Returns:
        ``(B, A, C)``.
    """
    b, a, g = p_neg.shape
    out = p_neg.new_ones(b, a, num_classes)
    p = torch.where(gt_labels[:, None] >= 0, p_neg, 1.0)  # padding claims nothing
    return out.scatter_reduce_(2, gt_labels.clamp(min=0)[:, None].expand(b, a, g), p, reduce="amin")


def dw_neg_weight(p_neg: Tensor, scores: Tensor, gamma2: float = 2.0) -> Tensor:
    """Negative weight (Sec. 3, "negative weighting function"):

    .. math:: w^{neg}_{ic} = P_{neg}(i, c) \\cdot I_{neg}(i, c), \\qquad I_{neg} = s_{ic}^{\\gamma_2}

    ``P_neg`` is a target (detached); the importance ``s^{gamma2}`` keeps its gradient, as the focal
    term of focal loss does and as in the authors' code. ``p_neg``, ``scores``: ``(B, A, C)``."""
    return p_neg.detach() * scores**gamma2

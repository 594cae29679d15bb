"""Fused sigmoid focal loss: loss and gradient in one pass over logits and class indices.

Focal loss, Eq. (5) of Lin et al., "Focal Loss for Dense Object Detection" (ICCV 2017,
https://arxiv.org/abs/1708.02002), for the logit :math:`x` of one class and its target :math:`y \\in \\{0, 1\\}`:

.. math::
    \\mathrm{FL}(p_t) = -\\alpha_t (1 - p_t)^{\\gamma} \\log(p_t), \\qquad
    p_t = \\begin{cases} \\sigma(x) & y = 1 \\\\ 1 - \\sigma(x) & y = 0 \\end{cases}, \\qquad
    \\alpha_t = \\begin{cases} \\alpha & y = 1 \\\\ 1 - \\alpha & y = 0 \\end{cases}

Write :math:`z = (1 - 2y)\\,x`, so that :math:`1 - p_t = \\sigma(z)`, :math:`p_t = \\sigma(-z)` and
:math:`-\\log p_t = \\mathrm{softplus}(z) = \\log(1 + e^{z})`, which is finite for every ``x``:

.. math::
    \\mathrm{FL} = \\alpha_t\\, \\sigma(z)^{\\gamma}\\, \\mathrm{softplus}(z)

Using :math:`\\sigma' = \\sigma(1 - \\sigma)` and :math:`\\mathrm{softplus}' = \\sigma`, its derivative is

.. math::
    \\frac{\\partial \\mathrm{FL}}{\\partial x} = (1 - 2y)\\, \\alpha_t\\, \\sigma(z)^{\\gamma}
    \\big[\\gamma\\, \\sigma(-z)\\, \\mathrm{softplus}(z) + \\sigma(z)\\big]
    = \\pm\\,\\alpha_t (1 - p_t)^{\\gamma} \\big(\\gamma\\, p_t \\log p_t + p_t - 1\\big)

(``+`` for ``y = 1``), the derivative of Appendix B of the paper with :math:`\\alpha_t` kept. The code
computes :math:`e = e^{-|x|} \\in (0, 1]`, :math:`\\mathrm{softplus}(\\pm z) = \\max(\\pm z, 0) + \\log(1 + e)`
and :math:`\\sigma(z)^{\\gamma} = \\exp(-\\gamma\\, \\mathrm{softplus}(-z))`: one exponential serves all terms
and nothing overflows or takes ``log(0)``. ``alpha < 0`` disables the weighting (:math:`\\alpha_t = 1`), as in
:func:`minidet.losses.sigmoid_focal_loss`.

Detectors sum the loss over classes and then over the anchors of each level, so the output here is the
row sum ``(B, A)``: the ``(B, A, C)`` loss is never stored. Targets are class indices ``(B, A)``, not a
one-hot ``(B, A, C)`` tensor. ``gamma`` and ``alpha`` may be per-level device tensors ``(L,)`` indexed by
``levels (A,)``, so Progressive Focal Loss's ``gamma_ad``/``alpha_ad`` are used without reading them
back to the host. On CUDA a Triton kernel (:mod:`minidet.kernels.focal_triton`) computes the row
losses and writes the gradient in the same pass; backward only multiplies it by the incoming gradient.
On CPU, :func:`focal_rows_torch` computes the same lines with PyTorch.
"""
from __future__ import annotations

import functools
import os
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

BACKENDS = ("auto", "triton", "torch")


def one_hot_to_labels(targets: Tensor) -> Tensor:
    """``(B, A, C)`` one-hot targets (zero rows for background) -> ``(B, A)`` int64 class index, ``-1``
    for background: the input of :func:`fused_sigmoid_focal_loss`. One pass, no host synchronisation."""
    value, index = targets.max(dim=-1)
    return torch.where(value > 0, index, torch.full_like(index, -1))


def _focal_terms(x: Tensor, y: Tensor, gamma: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise ``FL`` and ``dFL/dx`` (module docstring) for logits ``x``, bool targets ``y`` and
    broadcastable ``gamma``, ``alpha``; the same lines as the Triton kernel."""
    z = torch.where(y, -x, x)
    e = torch.exp(-x.abs())
    log1p_e = torch.log1p(e)  # the kernel has no log1p and uses Goldberg's exact rewrite of log(1 + e)
    softplus_z = z.clamp(min=0) + log1p_e  # -log p_t
    softplus_neg_z = (-z).clamp(min=0) + log1p_e  # -log (1 - p_t)
    r = 1.0 / (1.0 + e)
    q = torch.where(z >= 0, r, e * r)  # 1 - p_t = sigmoid(z)
    p_t = torch.where(z >= 0, e * r, r)
    focus = torch.exp(-gamma * softplus_neg_z)  # (1 - p_t)^gamma
    alpha_t = torch.where(alpha < 0, torch.ones_like(alpha), torch.where(y, alpha, 1.0 - alpha))
    weight = alpha_t * focus
    grad = torch.where(y, -weight, weight) * (gamma * p_t * softplus_z + q)
    return weight * softplus_z, grad


def focal_rows_torch(
    logits: Tensor, labels: Tensor, valid: Tensor | None, levels: Tensor | None, gamma: Tensor, alpha: Tensor,
    scale: Tensor | None, want_loss: bool, want_grad: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """PyTorch fallback with the signature of :func:`minidet.kernels.focal_triton.focal_rows_triton`:
    row losses ``(B, A)`` (float64 for float64 logits, else float32) and the gradient ``(B, A, C)`` in
    ``logits``' dtype, multiplied row-wise by ``scale (B, A)`` when given.

    On a CPU the rows go through :func:`focal_rows_chunked`, a block of rows at a time; elsewhere (a GPU
    without Triton) the whole batch goes through :func:`focal_rows_whole` at once."""
    rows_fn = focal_rows_chunked if logits.device.type == "cpu" else focal_rows_whole
    return rows_fn(logits, labels, valid, levels, gamma, alpha, scale, want_loss, want_grad)


def focal_rows_whole(
    logits: Tensor, labels: Tensor, valid: Tensor | None, levels: Tensor | None, gamma: Tensor, alpha: Tensor,
    scale: Tensor | None, want_loss: bool, want_grad: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """:func:`focal_rows_torch` as whole-batch tensor lines: :func:`_focal_terms` on the ``(B, A, C)``
    logits and a one-hot ``y``, then the row sums (a few large kernels: the right shape for a GPU)."""
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(compute)  # (B, A, C)
    y = labels[..., None] == torch.arange(x.shape[-1], device=x.device)  # (B, A, C) one-hot, as bool
    if levels is None:
        gamma, alpha = gamma.reshape(()), alpha.reshape(())
    else:
        gamma, alpha = gamma[levels][None, :, None], alpha[levels][None, :, None]  # (1, A, 1)
    loss, grad = _focal_terms(x, y, gamma.to(compute), alpha.to(compute))
    keep = torch.ones_like(labels, dtype=torch.bool) if valid is None else valid  # (B, A)
    rows = torch.where(keep, loss.sum(-1), 0.0) if want_loss else None
    if not want_grad:
        return rows, None
    if scale is not None:
        grad = grad * scale[..., None].to(compute)
    return rows, torch.where(keep[..., None], grad, 0.0).to(logits.dtype)


CHUNK_ELEMENTS = 1 << 15
"""Logits per block in :func:`focal_rows_chunked`: 32k float32 values, 128 KB per temporary, so that the
half-dozen temporaries of a block stay in a core's L2 cache and each line below reads cached data."""


def focal_rows_chunked(
    logits: Tensor, labels: Tensor, valid: Tensor | None, levels: Tensor | None, gamma: Tensor, alpha: Tensor,
    scale: Tensor | None, want_loss: bool, want_grad: bool, chunk_elements: int | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """:func:`focal_rows_torch` for CPU tensors, computed a block of rows at a time.

    A tensor the size of the logits (10M values for 4 images of 384 px with 91 classes) does not fit in
    any cache, so each of the element-wise lines of :func:`_focal_terms` over the whole batch is a trip
    through main memory. Here every block of :data:`CHUNK_ELEMENTS` logits goes through all lines while it
    is cached, and the lines are the negatives' alone: at most one element per row (the positive's class)
    has ``y = 1``, so every element is first treated as a negative,

    .. math::
        \\mathrm{FL}_0 = (1 - \\alpha)\\, p^{\\gamma}\\, \\mathrm{softplus}(x), \\qquad
        \\frac{\\partial \\mathrm{FL}_0}{\\partial x} = (1 - \\alpha)\\, p^{\\gamma}
        \\big[\\gamma\\, (1 - p)\\, \\mathrm{softplus}(x) + p\\big], \\qquad p = \\sigma(x)

    (the module docstring's formulas at :math:`y = 0`, :math:`z = x`), and afterwards the one element of each
    positive row is replaced by the :math:`y = 1` form, with :math:`1 - p = \\sigma(-x)` and
    :math:`-\\log p = \\mathrm{softplus}(-x)`:

    .. math::
        \\mathrm{FL}_1 = \\alpha\\, (1 - p)^{\\gamma}\\, \\mathrm{softplus}(-x), \\qquad
        \\frac{\\partial \\mathrm{FL}_1}{\\partial x} = -\\alpha\\, (1 - p)^{\\gamma}
        \\big[\\gamma\\, p\\, \\mathrm{softplus}(-x) + (1 - p)\\big]

    The per-row factors (``alpha``, ``valid``, ``scale``) multiply ``(rows, 1)`` columns, not blocks. The
    result equals :func:`_focal_terms`' up to rounding (tested in float64); nothing is read back to the host.
    """
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    B, A, C = logits.shape
    n = B * A
    x = logits.reshape(n, C)
    threshold = 40.0 if compute == torch.float64 else 20.0  # softplus(x) = x above it, exact to the dtype's eps
    per_row = levels is not None
    if per_row:  # one (gamma, alpha) per anchor, the same for every image: (n, 1) columns
        gamma_col = gamma.to(compute)[levels].repeat(B)[:, None]
        alpha_col = alpha.to(compute)[levels].repeat(B)[:, None]
    else:
        gamma_col, alpha_col = gamma.to(compute).reshape(1, 1), alpha.to(compute).reshape(1, 1)
    no_alpha = alpha_col < 0
    neg_w = torch.where(no_alpha, 1.0, 1.0 - alpha_col)  # (n | 1, 1)
    pos_w = torch.where(no_alpha, 1.0, alpha_col)
    keep = None if valid is None else valid.reshape(n, 1).to(compute)
    row_w = neg_w.expand(n, 1) if keep is None else neg_w * keep  # loss factor of each row's negatives
    grad_w = row_w if scale is None else row_w * scale.reshape(n, 1).to(compute)
    gamma_is_two = not per_row and float(gamma_col) == 2.0  # a CPU tensor: no device to wait for

    rows = torch.empty(n, dtype=compute) if want_loss else None
    grad = torch.empty((n, C), dtype=logits.dtype) if want_grad else None
    step = max(1, (chunk_elements or CHUNK_ELEMENTS) // max(C, 1))
    for s in range(0, n, step):
        e = min(s + step, n)
        xc = x[s:e].to(compute)
        p = torch.sigmoid(xc)
        sp = torch.nn.functional.softplus(xc, threshold=threshold)  # -log(1 - p)
        pg = p * p if gamma_is_two else p.pow(gamma_col[s:e] if per_row else gamma_col)  # p^gamma
        if want_loss:
            torch.sum(pg * sp, dim=1, out=rows[s:e])
            rows[s:e] *= row_w[s:e, 0]
        if want_grad:  # p^gamma [gamma (1 - p) softplus(x) + p], times the row factor
            inner = (1.0 - p).mul_(sp).mul_(gamma_col[s:e] if per_row else gamma_col).add_(p).mul_(pg)
            if grad.dtype == compute:
                torch.mul(inner, grad_w[s:e], out=grad[s:e])
            else:
                grad[s:e].copy_(inner.mul_(grad_w[s:e]))

    # the positives: one element per row, replaced by its y = 1 form
    is_pos = (labels >= 0) & (labels < C)
    idx = labels.clamp(0, C - 1).reshape(n, 1)
    pos_col = is_pos.reshape(n, 1)
    xp = x.gather(1, idx).to(compute)  # (n, 1)
    p = torch.sigmoid(xp)
    q = torch.sigmoid(-xp)  # 1 - p, exact where p is near 1
    sp_neg = torch.nn.functional.softplus(xp, threshold=threshold)  # -log(1 - p)
    sp_pos = torch.nn.functional.softplus(-xp, threshold=threshold)  # -log p
    g_col = gamma_col if per_row else gamma_col.expand(n, 1)
    kept = torch.ones_like(xp) if keep is None else keep
    if want_loss:
        loss0 = neg_w * p.pow(g_col) * sp_neg * kept
        loss1 = pos_w * q.pow(g_col) * sp_pos * kept
        rows += torch.where(pos_col, loss1 - loss0, 0.0).reshape(n)
    if want_grad:
        factor = kept if scale is None else kept * scale.reshape(n, 1).to(compute)
        grad1 = (-pos_w * q.pow(g_col) * (g_col * p * sp_pos + q) * factor).to(grad.dtype)
        grad.scatter_(1, idx, torch.where(pos_col, grad1, grad.gather(1, idx)))
    return (None if rows is None else rows.reshape(B, A)), (None if grad is None else grad.reshape(B, A, C))


@functools.cache
def _triton_kernels() -> ModuleType | None:
    """:mod:`minidet.kernels.focal_triton`, imported on first use (``None`` without Triton)."""
    try:
        from minidet.kernels import focal_triton
    except ImportError:
        return None
    return focal_triton


def use_triton(backend: str, device: torch.device) -> bool:
    """Whether ``backend`` (one of :data:`BACKENDS`) runs the Triton kernel for tensors on ``device``."""
    interpreting = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    runnable = (device.type == "cuda" or interpreting) and _triton_kernels() is not None
    if backend == "triton" and not runnable:
        raise RuntimeError(
            f"backend='triton' needs Triton and a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors); got a "
            f"{device.type} tensor, Triton {'found' if _triton_kernels() else 'not importable'}")
    return backend == "triton" or (backend == "auto" and runnable)


class _FusedFocal(torch.autograd.Function):
    """Row-summed focal loss. ``one_pass``: the forward pass writes ``dloss_row/dlogits`` into a buffer
    and backward scales it by ``grad_output`` (read logits + write buffer, then read buffer + write
    gradient). Otherwise backward recomputes the gradient from the saved logits (forward reads the
    logits; backward reads them again and writes the gradient: one memory pass fewer, more arithmetic).
    Either way one ``(B, A, C)`` tensor (gradient buffer or logits) is kept for backward."""

    @staticmethod
    def forward(ctx, logits, labels, valid, levels, gamma, alpha, triton, one_pass):
        rows_fn = _triton_kernels().focal_rows_triton if triton else focal_rows_torch
        grad_now = one_pass and ctx.needs_input_grad[0]
        rows, grad = rows_fn(logits, labels, valid, levels, gamma, alpha, None, True, grad_now)
        ctx.rows_fn, ctx.one_pass = rows_fn, one_pass
        ctx.save_for_backward(*((grad,) if one_pass else (logits, labels, valid, levels, gamma, alpha)))
        return rows

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows):
        if ctx.one_pass:
            (grad,) = ctx.saved_tensors
            # multiplied in grad_rows' float32 (float64), rounded once to the buffer's dtype
            grad = torch.mul(grad, grad_rows[..., None], out=torch.empty_like(grad))
        else:
            logits, labels, valid, levels, gamma, alpha = ctx.saved_tensors
            _, grad = ctx.rows_fn(logits, labels, valid, levels, gamma, alpha, grad_rows.contiguous(), False, True)
        return grad, None, None, None, None, None, None, None


def fused_sigmoid_focal_loss(
    logits: Tensor,
    labels: Tensor,
    gamma: float | Tensor = 2.0,
    alpha: float | Tensor = 0.25,
    levels: Tensor | None = None,
    valid: Tensor | None = None,
    *,
    backend: str = "auto",
    one_pass: bool = True,
) -> Tensor:
    """Sigmoid focal loss (Eq. 5 of Lin et al., module docstring) summed over classes, with its gradient.

    Equal to ``sigmoid_focal_loss(logits, one_hot(labels), alpha, gamma).sum(-1)`` (tested in float64)
    without building the one-hot targets or the ``(B, A, C)`` loss.

    Args:
        logits: ``(B, A, C)`` logits, any float dtype; computed in float32 (float64 stays float64).
        labels: ``(B, A)`` integer class index in ``[0, C)``; any other value (``-1`` or ``C``) is
            background, an all-negative row.
        gamma, alpha: floats, or float tensors ``(L,)`` of one value per pyramid level (on ``logits``'
            device), read at ``levels``; ``alpha < 0`` disables the weighting.
        levels: ``(A,)`` int64 level of each anchor in ``[0, L)``; needed when ``gamma`` or ``alpha`` has
            several values.
        valid: ``(B, A)`` bool, anchors that count; ignored anchors get zero loss and zero gradient.
        backend: ``"auto"`` (Triton on CUDA, or under ``TRITON_INTERPRET=1``; else PyTorch), ``"triton"``
            or ``"torch"``.
        one_pass: compute the gradient in the forward pass (see :class:`_FusedFocal`); ``False``
            recomputes it in backward.

    Returns:
        ``(B, A)`` loss per anchor, float32 (float64 for float64 logits), differentiable w.r.t. ``logits``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if logits.dim() != 3 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float (B, A, C) tensor, got {tuple(logits.shape)} {logits.dtype}")
    B, A, _ = logits.shape
    if labels.shape != (B, A) or labels.is_floating_point():
        raise ValueError(
            f"labels must be an integer (B, A) = {(B, A)} tensor, got {tuple(labels.shape)} {labels.dtype}")
    if valid is not None and (valid.shape != (B, A) or valid.dtype != torch.bool):
        raise ValueError(f"valid must be a bool (B, A) = {(B, A)} tensor, got {tuple(valid.shape)} {valid.dtype}")
    if not isinstance(gamma, Tensor) and gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    # torch.full fills on the device; torch.tensor([v], device=...) would copy from the host and wait for it
    device = logits.device
    gamma_t, alpha_t = (v.reshape(-1) if isinstance(v, Tensor) else torch.full((1,), v, dtype=compute, device=device)
                        for v in (gamma, alpha))
    num = max(gamma_t.numel(), alpha_t.numel())
    if num == 1:
        levels = None  # one (gamma, alpha) for every anchor
    elif levels is None or levels.shape != (A,) or gamma_t.numel() not in (1, num) or alpha_t.numel() not in (1, num):
        raise ValueError(f"per-level gamma {tuple(gamma_t.shape)} / alpha {tuple(alpha_t.shape)} need equal "
                         f"lengths L and levels of shape (A,) = ({A},), got "
                         f"{None if levels is None else tuple(levels.shape)}")
    else:
        gamma_t, alpha_t, levels = gamma_t.expand(num).contiguous(), alpha_t.expand(num).contiguous(), levels.long().contiguous()
    return _FusedFocal.apply(logits.contiguous(), labels.long().contiguous(),
                             None if valid is None else valid.contiguous(), levels, gamma_t, alpha_t,
                             use_triton(backend, logits.device), one_pass)

"""Triton kernel of the fused sigmoid focal loss: loss row sums and gradient in one pass.

The math (Eq. 5 of Lin et al. and its closed-form derivative) is written out in
:mod:`minidet.losses.focal_fused`, whose PyTorch fallback computes the same lines; this file holds only
the kernel and its launcher. One program handles ``BLOCK_N`` rows (anchors) of ``C`` classes: it reads
their logits once, their class index, ignore flag and level, and writes one loss per row and, if asked,
the ``(BLOCK_N, C)`` gradient. Nothing else of size ``(B, A, C)`` is read or written, which is what
makes it memory-bound at ``2 * B * A * C`` elements (read logits, write gradient).

Importing this module needs Triton. With ``TRITON_INTERPRET=1`` set before that import, Triton runs the
kernel on CPU tensors with numpy (its interpreter), which is how the tests check the kernel without a GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

ELEMENTS_PER_PROGRAM = 4096  # BLOCK_N * BLOCK_C; a first guess, not tuned on a GPU


@triton.jit
def _focal_rows_kernel(
    logits_ptr, labels_ptr, valid_ptr, levels_ptr, gamma_ptr, alpha_ptr, scale_ptr, loss_ptr, grad_ptr,
    N, A, C,
    HAS_VALID: tl.constexpr, HAS_LEVELS: tl.constexpr, HAS_SCALE: tl.constexpr,
    WRITE_LOSS: tl.constexpr, WRITE_GRAD: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) flat anchor index b * A + a
    cols = tl.arange(0, BLOCK_C)  # (BLOCK_C,) class index
    row_ok = rows < N
    mask = row_ok[:, None] & (cols < C)[None, :]
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]  # int64: B * A * C can pass 2**31 (LVIS)
    x = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    label = tl.load(labels_ptr + rows, mask=row_ok, other=-1)
    y = cols[None, :] == label[:, None]  # one-hot target, built here instead of read from memory
    if HAS_LEVELS:
        level = tl.load(levels_ptr + rows % A, mask=row_ok, other=0)
        gamma = tl.load(gamma_ptr + level, mask=row_ok, other=0.0).to(COMPUTE)[:, None]
        alpha = tl.load(alpha_ptr + level, mask=row_ok, other=0.0).to(COMPUTE)[:, None]
    else:
        gamma = tl.load(gamma_ptr).to(COMPUTE)
        alpha = tl.load(alpha_ptr).to(COMPUTE)
    if HAS_VALID:
        mask = mask & (tl.load(valid_ptr + rows, mask=row_ok, other=0) != 0)[:, None]

    # The lines of focal_fused._focal_terms, in the same order (z = (1 - 2y) x, see its docstring).
    z = tl.where(y, -x, x)
    e = tl.exp(-tl.abs(x))  # in (0, 1]: never overflows
    u = 1.0 + e
    # log1p(e) without libdevice (Triton's interpreter has none): log(u) * e / (u - 1) is exact to a few
    # ulps even where 1 + e rounds (Goldberg, "What every computer scientist should know...", Thm. 4).
    log1p_e = tl.where(u == 1.0, e, tl.log(u) * (e / tl.where(u == 1.0, 1.0, u - 1.0)))
    softplus_z = tl.maximum(z, 0.0) + log1p_e  # -log p_t
    softplus_neg_z = tl.maximum(-z, 0.0) + log1p_e  # -log (1 - p_t)
    r = 1.0 / u
    q = tl.where(z >= 0, r, e * r)  # 1 - p_t = sigmoid(z)
    p_t = tl.where(z >= 0, e * r, r)  # sigmoid(-z)
    focus = tl.exp(-gamma * softplus_neg_z)  # (1 - p_t)^gamma, 0 (not NaN) where 1 - p_t underflows
    alpha_t = tl.where(alpha < 0, 1.0, tl.where(y, alpha, 1.0 - alpha))
    weight = alpha_t * focus

    if WRITE_LOSS:
        loss = tl.where(mask, weight * softplus_z, 0.0)
        tl.store(loss_ptr + rows, tl.sum(loss, axis=1), mask=row_ok)
    if WRITE_GRAD:
        grad = tl.where(y, -weight, weight) * (gamma * p_t * softplus_z + q)
        if HAS_SCALE:  # backward of the recompute mode: d loss_row / d x times the incoming gradient
            grad = grad * tl.load(scale_ptr + rows, mask=row_ok, other=0.0).to(COMPUTE)[:, None]
        grad = tl.where(mask, grad, 0.0)
        tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=row_ok[:, None] & (cols < C)[None, :])


def focal_rows_triton(
    logits: Tensor, labels: Tensor, valid: Tensor | None, levels: Tensor | None, gamma: Tensor, alpha: Tensor,
    scale: Tensor | None, want_loss: bool, want_grad: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Launch the kernel on contiguous ``logits (B, A, C)``, ``labels (B, A)`` int64, ``valid (B, A)`` bool
    or None, ``levels (A,)`` int64 or None (then ``gamma``/``alpha`` have one element), ``scale (B, A)``
    or None. Returns the row losses ``(B, A)`` (float64 for float64 logits, else float32) and the
    gradient ``(B, A, C)`` in ``logits``' dtype, each None when not asked for."""
    B, A, C = logits.shape
    n = B * A
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    loss = torch.empty(B, A, dtype=compute, device=logits.device) if want_loss else None
    grad = torch.empty_like(logits) if want_grad else None
    block_c = triton.next_power_of_2(C)
    block_n = max(1, min(triton.next_power_of_2(n), ELEMENTS_PER_PROGRAM // block_c))
    dummy = labels  # stands in for pointers a disabled branch never reads
    _focal_rows_kernel[(triton.cdiv(n, block_n),)](
        logits, labels,
        dummy if valid is None else valid.view(torch.uint8),
        dummy if levels is None else levels,
        gamma, alpha,
        dummy if scale is None else scale,
        dummy if loss is None else loss,
        dummy if grad is None else grad,
        n, A, C,
        HAS_VALID=valid is not None, HAS_LEVELS=levels is not None, HAS_SCALE=scale is not None,
        WRITE_LOSS=want_loss, WRITE_GRAD=want_grad,
        COMPUTE=tl.float64 if compute == torch.float64 else tl.float32,
        BLOCK_N=block_n, BLOCK_C=block_c,
    )
    return loss, grad

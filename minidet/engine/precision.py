"""Which precision a step runs in: bf16 autocast where the device computes bf16 natively, fp32 elsewhere.

On CUDA, autocast (bf16, or fp16 with a gradient scaler) is the usual mixed precision. On a CPU,
bf16 autocast pays only where the processor has bf16 instructions (AVX512-BF16, AMX-BF16): oneDNN then
runs convolutions and matrix products in bf16 at up to twice the fp32 rate. Without them oneDNN emulates
bf16 by converting to fp32 and back, which is several times *slower* than plain fp32 (measured in the
README on a 2-core AVX2 machine), so there the default is fp32. :func:`cpu_has_native_bf16` reads the CPU's flags (oneDNN's own query
also says yes on AVX512 CPUs that only emulate bf16, where bf16 autocast halves the training speed).

Losses stay in fp32 under autocast as on CUDA: every detector casts its head outputs with ``.float()``
before a loss, and the element-wise ops of the losses are not autocast ops, so they run in fp32.

One oneDNN defect is worked around here (:func:`guard_narrow_strided_convs`, applied by the trainer): the
bf16 weight gradient of a strided convolution whose input is narrower than its stride (a ``(B, C, H, 1)``
map into a stride-2 3x3 conv, e.g. RetinaNet's P7 conv on a 64-px test image) comes back as garbage
(values near 1e20-1e37, or NaN) on an AMX-BF16 Xeon (torch 2.14), while the forward pass is right.
Such a conv runs in fp32 instead; every other conv keeps bf16.

>>> dtype = autocast_dtype("cpu", amp=True)       # torch.bfloat16 on an AMX Xeon, None (fp32) elsewhere
>>> with autocast(torch.device("cpu"), dtype):
...     out = model(images)
"""
from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The x86 feature flags the kernel lists (the first ``flags`` line of ``cpuinfo``), or ``None`` where there is
    no such line (not Linux, not x86: ARM lists ``Features``)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return None


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16), i.e. where bf16 autocast pays.

    oneDNN's own query (``torch.ops.mkldnn._is_mkldnn_bf16_supported``, what PyTorch's CPU bf16 tests use) also says
    yes on an AVX512 CPU *without* those instructions, where oneDNN emulates bf16: there a RetinaNet training step
    of the default recipe (batch 8, 256 px, one thread) took 2.11 s under bf16 autocast against 0.84 s in fp32
    (``results/perf/bf16_vs_fp32_avx512_xeon.json``, ``tools/step_time.py``; a 2-core Xeon with AVX512 and VNNI but
    no AVX512-BF16). So where the kernel lists the x86 flags (:func:`cpu_flags`), they decide; elsewhere oneDNN's
    query does."""
    if not torch.backends.mkldnn.is_available():
        return False
    flags = cpu_flags()
    if flags is not None:
        return bool(NATIVE_BF16_FLAGS & flags)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the query: assume no native bf16
        return False


def autocast_dtype(device: str | torch.device, amp: bool = True, amp_dtype: str = "bfloat16") -> torch.dtype | None:
    """The autocast dtype for ``device``, or ``None`` for plain fp32.

    Args:
        device: where the model runs.
        amp: mixed precision wanted (``TrainConfig.amp``, ``--no-amp`` turns it off).
        amp_dtype: ``"bfloat16"`` or ``"float16"``; on a CPU only bf16 is used, and only when
            :func:`cpu_has_native_bf16` (fp16 autocast on a CPU is emulated and slow).

    Returns:
        ``torch.bfloat16`` / ``torch.float16`` or ``None``.
    """
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {tuple(AMP_DTYPES)}, got {amp_dtype!r}")
    device = torch.device(device)
    if not amp:
        return None
    if device.type == "cuda":
        return AMP_DTYPES[amp_dtype]
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def describe(device: str | torch.device, dtype: torch.dtype | None) -> str:
    """One line for logs: e.g. ``"bf16 autocast (native bf16 on this CPU)"`` or ``"fp32 (...)"``."""
    device = torch.device(device)
    if dtype is not None:
        name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
        why = "native bf16 on this CPU" if device.type == "cpu" else device.type
        return f"{name} autocast ({why}; losses in fp32)"
    if device.type == "cpu" and not cpu_has_native_bf16():
        return "fp32 (this CPU has no native bf16: bf16 autocast would be emulated and slower)"
    return "fp32"


def autocast(device: str | torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or a null context for fp32 (``dtype`` None)."""
    device = torch.device(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class NarrowSafeConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that leaves CPU autocast for inputs narrower than its stride (see module docstring).

    On such an input oneDNN's bf16 weight gradient is wrong; the map is at most ``stride - 1`` pixels wide,
    so computing it in fp32 costs nothing measurable. Everywhere else it is the plain convolution."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.shape[-1] < self.stride[1] and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def guard_narrow_strided_convs(model: nn.Module) -> int:
    """Turn every strided ``nn.Conv2d`` (width stride > 1, kernel width > 1) of ``model`` into a
    :class:`NarrowSafeConv2d` in place (same parameters, same state-dict keys). Returns how many.

    The trainer calls it when it trains under CPU bf16 autocast; inference needs no guard (the forward
    pass is right)."""
    n = 0
    for m in model.modules():
        if type(m) is nn.Conv2d and m.stride[1] > 1 and m.kernel_size[1] > 1:
            m.__class__ = NarrowSafeConv2d
            n += 1
    return n

"""Which precision a run uses (bf16 autocast where the device has native bf16, fp32 elsewhere), and a bf16
CPU training step, forced on a CPU without native bf16 so that CI runs it everywhere (emulated: slower there,
but the same arithmetic as on an AMX Xeon)."""
import math

import pytest
import torch

from minidet.engine import TrainConfig, Trainer, build_loader, evaluate
from minidet.engine import precision
from minidet.engine.precision import autocast_dtype, cpu_has_native_bf16, describe


@pytest.fixture
def native_bf16(monkeypatch):
    def set_to(value: bool):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: value)
    return set_to


def test_autocast_dtype_rule(native_bf16):
    native_bf16(True)
    assert autocast_dtype("cpu") is torch.bfloat16 and autocast_dtype("cpu", amp=False) is None
    assert autocast_dtype("cpu", amp_dtype="float16") is torch.bfloat16  # fp16 autocast on a CPU is never chosen
    native_bf16(False)
    assert autocast_dtype("cpu") is None
    assert "no native bf16" in describe("cpu", None)
    assert autocast_dtype("cuda") is torch.bfloat16 and autocast_dtype("cuda", amp_dtype="float16") is torch.float16
    assert autocast_dtype("cuda", amp=False) is None and describe("cuda", torch.float16).startswith("fp16 autocast")
    with pytest.raises(ValueError, match="amp_dtype"):
        autocast_dtype("cpu", amp_dtype="float8")


def test_native_bf16_means_bf16_instructions(tmp_path, monkeypatch):
    """The flags decide: AVX512 alone (where oneDNN only emulates bf16) is not native; AVX512-BF16 or AMX-BF16 is."""
    from minidet.engine import precision

    read_flags = precision.cpu_flags
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "cpu_flags", lambda: read_flags(info))
    cases = {"fpu avx2 avx512f avx512bw avx512_vnni": False, "fpu avx512f avx512_bf16": True, "fpu amx_tile amx_bf16": True}
    try:
        for flags, native in cases.items():
            info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
            assert precision.cpu_flags() == frozenset(flags.split())
            precision.cpu_has_native_bf16.cache_clear()
            assert precision.cpu_has_native_bf16() is (native and torch.backends.mkldnn.is_available())
    finally:
        precision.cpu_has_native_bf16.cache_clear()
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # ARM: no x86 flags line, oneDNN's query decides
    assert read_flags(info) is None and read_flags(tmp_path / "missing") is None


def test_native_bf16_on_this_machine_agrees_with_its_flags():
    from minidet.engine.precision import NATIVE_BF16_FLAGS, cpu_flags

    flags = cpu_flags()
    if flags is None:
        pytest.skip("no x86 flags line in /proc/cpuinfo")
    assert cpu_has_native_bf16() == (bool(NATIVE_BF16_FLAGS & flags) and torch.backends.mkldnn.is_available())


def test_bf16_cpu_training_step_and_evaluation_stay_finite(tiny_shapes, native_bf16, capsys):
    from minidet.data import CocoDetection, build_transforms
    from minidet.models import build_retinanet

    native_bf16(True)
    torch.manual_seed(0)
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(True, 96), seed=0)
    model = build_retinanet(ds.num_classes, backbone="tiny", octave_base_scale=2.0)
    t = Trainer(model, build_loader(ds, 4, train=True, seed=0), TrainConfig(iters=3, warmup_iters=1, log_interval=1), device="cpu")
    assert t.amp_dtype is torch.bfloat16
    seen = []
    handle = model.head.register_forward_hook(lambda m, i, out: seen.append(out[0].dtype))
    history = t.fit(progress=True)
    handle.remove()
    assert "precision bf16 autocast" in capsys.readouterr().out
    assert seen[0] is torch.bfloat16  # the network ran in bf16 ...
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in history.rows)
    assert all(p.dtype is torch.float32 for p in model.parameters())  # ... the weights stay fp32
    val = CocoDetection(tiny_shapes["val"], tiny_shapes["val_images"], build_transforms(False, 96))
    metrics = evaluate(model, build_loader(val, 4, train=False), "cpu")
    assert set(metrics) >= {"AP", "AP50"} and all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("width", [1, 5])
def test_narrow_input_into_a_strided_conv_gets_the_fp32_weight_gradient(width):
    """oneDNN's bf16 weight gradient of a stride-2 conv on a width-1 map is garbage on AMX Xeons; the
    guarded conv computes that case in fp32 (and is the plain bf16 conv on wider maps)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, stride=2, padding=1)
    x = torch.randn(2, 64, 8, width)
    conv(x).sum().backward()
    expected, conv.weight.grad = conv.weight.grad.clone(), None
    assert precision.guard_narrow_strided_convs(torch.nn.Sequential(conv, torch.nn.Conv2d(64, 8, 1))) == 1
    assert isinstance(conv, precision.NarrowSafeConv2d) and set(conv.state_dict()) == {"weight", "bias"}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == (torch.float32 if width == 1 else torch.bfloat16)
    y.float().sum().backward()
    torch.testing.assert_close(conv.weight.grad, expected, rtol=0.02, atol=0.05 * expected.abs().max().item())


def test_bf16_step_on_64px_images_has_a_finite_gradient(tiny_shapes, native_bf16):
    """At 64 px RetinaNet's P6 map is 1 pixel wide: the P7 conv is the narrow case the guard exists for."""
    from minidet.data import CocoDetection, build_transforms
    from minidet.models import build_retinanet

    native_bf16(True)
    torch.manual_seed(0)
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(True, 64), seed=0)
    model = build_retinanet(ds.num_classes, backbone="tiny")
    t = Trainer(model, build_loader(ds, 2, train=True, seed=0),
                TrainConfig(iters=3, warmup_iters=1, log_interval=1, channels_last=True), device="cpu")
    history = t.fit(progress=False)
    assert all(math.isfinite(r["grad_norm"]) and r["grad_norm"] < 1e4 for r in history.rows)

"""The benchmark script runs and ends with one JSON line (its timings are not asserted: machine-dependent)."""
import json

import pytest
import torch

from minidet.bench import build_pair, main, peak_memory_mib


@pytest.mark.parametrize("model", ["retinanet", "fcos"])
def test_bench_prints_a_json_last_line(capsys, model):
    result = main(["--model", model, "--device", "cpu", "--size", "128", "--batch", "1", "--repeats", "1",
                   "--warmup", "0", "--classes", "5", "--objects", "2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = json.loads(last)
    assert parsed == result
    assert {"model", "device", "minidet_s", "torchvision_s", "speedup", "minidet_infer_s", "torchvision_infer_s",
            "infer_speedup", "minidet_train_peak_mib", "torchvision_train_peak_mib"} <= set(parsed)
    assert parsed["model"] == model
    assert abs(parsed["speedup"] - parsed["torchvision_s"] / parsed["minidet_s"]) < 0.01
    # the same network on both sides; minidet's FCOS adds a learnable scale per level (5 numbers)
    assert parsed["params"] - parsed["torchvision_params"] == (5 if model == "fcos" else 0)


def test_both_sides_are_the_same_network():
    ours, theirs = build_pair("fcos", 5, 128, torch.device("cpu"), channels_last=False)
    assert sorted(p.shape for p in ours.parameters() if p.dim() > 0) == sorted(p.shape for p in theirs.parameters())


def test_peak_memory_sees_a_large_allocation():
    peak = peak_memory_mib(lambda: torch.ones(64, 2**20).sum(), torch.device("cpu"))  # 256 MiB of float32
    if peak is None:
        pytest.skip("no /proc/self/clear_refs on this system")
    assert 250 < peak < 400

"""The benchmark script runs and ends with one JSON line (its timings are not asserted: machine-dependent)."""
import json

from minidet.bench import main


def test_bench_prints_a_json_last_line(capsys):
    result = main(["--model", "retinanet", "--device", "cpu", "--size", "64", "--batch", "1", "--repeats", "1",
                   "--warmup", "0", "--classes", "5", "--objects", "2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = json.loads(last)
    assert parsed == result
    assert {"model", "device", "minidet_s", "torchvision_s", "speedup"} <= set(parsed)
    assert parsed["speedup"] == round(parsed["torchvision_s"] / parsed["minidet_s"], 3) or abs(
        parsed["speedup"] - parsed["torchvision_s"] / parsed["minidet_s"]) < 0.01

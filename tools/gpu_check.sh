#!/usr/bin/env bash
# The whole CUDA check of minidet, as one script for a short GPU lease (about 8 minutes on one H200).
#
#   bash tools/gpu_check.sh [OUTDIR]        # OUTDIR defaults to $OUT (the device tool's folder), else ./gpu_check
#
# It writes its logs and check.json into OUTDIR:
#   1. the CUDA tests: `pytest -m cuda` on the test files that hold them, named one by one (so a lesson or
#      book dependency missing on the GPU machine cannot abort collection), with -rs and durations;
#   2. python -m minidet.bench --model retinanet|fcos --device cuda --amp --size 800 --batch 8;
#   3. python -m minidet.bench_focal --device cuda;
#   4. the default recipe (minidet train) on CUDA, cut at GPU_CHECK_TRAIN_S seconds (default 150) of training:
#      its iterations per second and, when it finishes, its COCO AP;
#   5. check.json: cuda_tests_passed/failed/skipped, retinanet_speedup, fcos_speedup, peak memory,
#      focal_copy_bandwidth_fraction, train_it_per_s, AP, and what the machine had (torch, Triton, a C compiler
#      and Python.h, which Triton needs to build its launcher).
# Without a GPU every CUDA part skips and the script still runs to the end (check.json then says cuda: false).
# It installs nothing from the network: minidet runs from the checkout (PYTHONPATH), and packages the GPU
# image lacks (pycocotools) come as wheels in .whl/ when present (see README, "GPU check").
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=${1:-${OUT:-$ROOT/gpu_check}}
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/minidet_site .whl/*.whl \
    >"$DEST/wheels.log" 2>&1 || echo "gpu_check: installing .whl/ failed (see wheels.log)"
  export PYTHONPATH=/tmp/minidet_site:${PYTHONPATH:-}
fi
export PYTHONPATH=$ROOT:${PYTHONPATH:-}
CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
echo "gpu_check: cuda=$CUDA, logs -> $DEST"

{
  echo "## machine"; (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi")
  $PY - <<'PY'
import shutil, sysconfig, os
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
try:
    import triton; print("triton", triton.__version__)
except Exception as exc:
    print("triton: not importable:", exc)
cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
print("C compiler:", cc or "MISSING (Triton cannot build its launcher: install gcc)")
print("Python.h:", header if os.path.exists(header) else f"MISSING at {header} (Triton needs the Python headers: python3-dev)")
for mod in ("pycocotools", "torchvision"):
    try:
        m = __import__(mod); print(mod, getattr(m, "__version__", "ok"))
    except Exception as exc:
        print(mod, "MISSING:", exc)
PY
} >"$DEST/machine.log" 2>&1
cat "$DEST/machine.log"

# 1. CUDA tests, by file
CUDA_FILES=$(grep -l -E "mark\.cuda|pytestmark = pytest\.mark\.cuda" tests/test_*.py | tr '\n' ' ')
echo "gpu_check: pytest -m cuda $CUDA_FILES"
timeout 300 $PY -m pytest -m cuda -rs --durations=15 -p no:cacheprovider -q $CUDA_FILES --junitxml="$DEST/cuda_tests.xml" \
  >"$DEST/cuda_tests.log" 2>&1
echo "gpu_check: pytest exit $? ($(tail -n 1 "$DEST/cuda_tests.log"))"

if [ "$CUDA" = 1 ]; then
  # 2. minidet against torchvision at COCO-like size, bf16 autocast
  for m in retinanet fcos; do
    timeout 240 $PY -m minidet.bench --model $m --device cuda --amp --size 800 --batch 8 --repeats 7 >"$DEST/bench_$m.log" 2>&1
    echo "gpu_check: bench $m exit $?"; tail -n 4 "$DEST/bench_$m.log" | head -n 3
  done
  # 3. the fused focal kernel against copy bandwidth
  timeout 180 $PY -m minidet.bench_focal --device cuda >"$DEST/bench_focal.log" 2>&1
  echo "gpu_check: bench_focal exit $?"; grep -v '^{' "$DEST/bench_focal.log" | tail -n 7
  # 4. the default recipe on CUDA, at most GPU_CHECK_TRAIN_S seconds of training
  rm -rf /tmp/minidet_gpu_run
  timeout $((${GPU_CHECK_TRAIN_S:-150} + 120)) $PY -m minidet train --device cuda --out /tmp/minidet_gpu_run \
    --data-root /tmp/minidet_gpu_data --workers 4 --max-train-seconds "${GPU_CHECK_TRAIN_S:-150}" >"$DEST/train.log" 2>&1
  echo "gpu_check: train exit $?"; tail -n 3 "$DEST/train.log"
  cp /tmp/minidet_gpu_run/metrics.json "$DEST/train_metrics.json" 2>/dev/null
  cp /tmp/minidet_gpu_run/run.json "$DEST/train_run.json" 2>/dev/null
else
  echo "gpu_check: no CUDA device: benchmarks and the CUDA training run are skipped"
fi

# 5. the summary
DEST="$DEST" CUDA="$CUDA" $PY - <<'PY'
import json, os, re
from pathlib import Path
import xml.etree.ElementTree as ET

dest = Path(os.environ["DEST"])
out = {"cuda": os.environ["CUDA"] == "1"}
try:
    suite = ET.parse(dest / "cuda_tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    out.update(cuda_tests_passed=n - f - e - s, cuda_tests_failed=f + e, cuda_tests_skipped=s)
    out["cuda_tests_failing"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                                 if c.find("failure") is not None or c.find("error") is not None]
except (OSError, ET.ParseError, AttributeError) as exc:
    out["cuda_tests_error"] = f"no junit report: {exc}"


def last_json(path):
    try:
        lines = [l for l in Path(path).read_text().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None


for m in ("retinanet", "fcos"):
    b = last_json(dest / f"bench_{m}.log")
    out[f"{m}_speedup"] = b and b["speedup"]
    out[f"{m}_loss_speedup"] = b and b.get("loss_speedup")
    out[f"{m}_infer_speedup"] = b and b["infer_speedup"]
    for side in ("minidet", "torchvision"):
        out[f"{m}_{side}_train_peak_mib"] = b and b[f"{side}_train_peak_mib"]
focal = last_json(dest / "bench_focal.log")
if focal:
    fused = {k: v["frac_copy"] for k, v in focal["methods"].items() if k.startswith("fused")}
    out["focal_copy_bandwidth_fraction"] = max(fused.values()) if fused else None
    out["focal_copy_bandwidth_by_method"] = {k: v["frac_copy"] for k, v in focal["methods"].items()}
else:
    out["focal_copy_bandwidth_fraction"] = None
run = {}
try:
    run = json.loads((dest / "train_run.json").read_text())
except OSError:
    pass
out["train_iters"] = run.get("iterations")
out["train_it_per_s"] = run.get("it_per_s")
try:
    m = json.loads((dest / "train_metrics.json").read_text())
    out["AP"], out["AP50"] = m["AP"], m["AP50"]
except OSError:
    out["AP"] = out["AP50"] = None
log = (dest / "machine.log").read_text() if (dest / "machine.log").exists() else ""
out["machine"] = [l for l in log.splitlines() if l and not l.startswith("##")]
(dest / "check.json").write_text(json.dumps(out, indent=1))
print(json.dumps({k: v for k, v in out.items() if k != "machine"}))
PY

#!/usr/bin/env bash
# The README's CPU benchmark settings (minidet vs torchvision, the same ResNet-50-FPN on both sides), each run's
# JSON line appended to results/perf/bench_cpu.jsonl with the date, load average and CPU flags.
# Usage: bash tools/bench_cpu.sh [threads]   (default: torch's choice); ONLY="<args>" runs one setting
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/perf/bench_cpu.jsonl
threads=${1:-}
extra=${threads:+--threads $threads}
run() {
  [ -n "${ONLY:-}" ] && [[ "$*" != "$ONLY" ]] && return 0
  line=$(python -m minidet.bench "$@" $extra | tail -1)
  python - "$line" "$*" >> "$out" <<'PY'
import datetime, json, os, sys
from minidet.engine.precision import cpu_has_native_bf16
rec = json.loads(sys.argv[1])
rec.update(args=sys.argv[2], date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           load_avg_1min=round(os.getloadavg()[0], 2), cpu_native_bf16=cpu_has_native_bf16())
print(json.dumps(rec))
PY
  tail -1 "$out"
}
run --model retinanet --device cpu --size 384 --batch 4 --objects 100 --repeats 5
run --model retinanet --device cpu --size 256 --batch 2
run --model fcos --device cpu --size 256 --batch 2
run --model fcos --device cpu --size 384 --batch 4 --objects 100 --repeats 5
run --model retinanet --device cpu --size 256 --batch 2 --amp

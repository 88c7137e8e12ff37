#!/usr/bin/env bash
# GPU acceptance in one command, on a GPU machine with no network (README, "GPU acceptance"):
#   bash bench/gpu_acceptance.sh
# 1. no CUDA: one line "gpu_acceptance: no GPU (...): nothing run", exit 0;
# 2. installs the wheels that bench/gpu_wheels.sh prepared in .whl/ (offline) into $GPU_SITE, and builds DeepSpeed
#    from its sdist there (offline, no build isolation, no ops compiled ahead); if that fails only the ZeRO-3 case
#    says "deepspeed unavailable: <reason>";
# 3. bench/gpu_acceptance.py run: builds the ~190M demo model, runs every case through `hpc-finetune submit --wait`
#    on a local GPU profile, prints one table; the whole run, steps 1-3, within $GPU_ACCEPTANCE_BUDGET_S (480 s).
# Exit: 0 when every case completed with its loss falling (or no GPU), 1 otherwise.
# .whl/ is git-ignored: copy or carry it to the GPU machine with the working tree. Rerun some cases on the same
# machine (the model and the installed wheels are reused): GPU_ACCEPTANCE_CASES=fsdp-lora,zero3-lora bash ...
# Environment: PY (python3), GPU_WHEELS (.whl), GPU_SITE (/tmp/hpcft-site), GPU_ACCEPTANCE_WORK
# (/tmp/hpcft-gpu-acceptance), OUT (table, JSON and logs; default bench/out/gpu_acceptance), GPU_ACCEPTANCE_CASES.
set -uo pipefail
start=$(date +%s)
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WHEELS=${GPU_WHEELS:-.whl}
SITE=${GPU_SITE:-/tmp/hpcft-site}
WORK=${GPU_ACCEPTANCE_WORK:-/tmp/hpcft-gpu-acceptance}
RESULTS=${OUT:-bench/out/gpu_acceptance}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

"$PY" bench/gpu_acceptance.py gpu-check
rc=$?
[ "$rc" = 10 ] && exit 0
[ "$rc" = 0 ] || { echo "gpu_acceptance: the GPU check failed (exit $rc)" >&2; exit "$rc"; }

mkdir -p "$WORK" "$RESULTS"
rm -f "$WORK/deepspeed-unavailable.txt"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl || { echo "gpu_acceptance: installing the wheels of $WHEELS into $SITE failed" >&2; exit 1; }
  export PYTHONPATH="$PYTHONPATH:$SITE"
  echo "gpu_acceptance: installed $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
else
  echo "gpu_acceptance: no wheels in $WHEELS (bash bench/gpu_wheels.sh prepares them where a registry is" \
    "reachable); using what is installed"
fi
sdist=$(ls "$WHEELS"/deepspeed-*.tar.gz 2>/dev/null | head -1)
if [ -n "$sdist" ]; then
  t0=$(date +%s)
  if DS_BUILD_OPS=0 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
      --target "$SITE-deepspeed" "$sdist" > "$RESULTS/deepspeed-build.log" 2>&1; then
    export PYTHONPATH="$PYTHONPATH:$SITE-deepspeed"
    echo "gpu_acceptance: built DeepSpeed from $sdist in $(( $(date +%s) - t0 )) s"
  else
    reason=$(grep -E 'Error|error:' "$RESULTS/deepspeed-build.log" | tail -1)
    echo "build from $(basename "$sdist") failed: ${reason:-see deepspeed-build.log}" \
      > "$WORK/deepspeed-unavailable.txt"
    echo "gpu_acceptance: deepspeed $(cat "$WORK/deepspeed-unavailable.txt")"
  fi
fi

exec "$PY" bench/gpu_acceptance.py run --work "$WORK" --out "$RESULTS" --started "$start" \
  --budget "${GPU_ACCEPTANCE_BUDGET_S:-480}" --cases "${GPU_ACCEPTANCE_CASES:-}"

#!/usr/bin/env bash
# Every benchmark in one command (18 minutes on a 2-core VM); rewrites bench/RESULTS.md with the tables.
#   bash bench/run_all.sh            (as root for the dev-cluster part; otherwise it is skipped and said so)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=bench/RESULTS.md
start=$(date +%s)
# The GPU acceptance table is measured on another machine (bench/gpu_acceptance.sh): keep that section as it is.
gpu_section=$(awk '/^## GPU acceptance/{keep=1} keep && /^## / && !/^## GPU acceptance/{keep=0} keep' "$OUT" 2>/dev/null || true)
{
  echo "# Benchmark results"
  echo
  echo "Written by \`bash bench/run_all.sh\` on $(date -u +%Y-%m-%d) ($(uname -m), $(nproc) cores, $(. /etc/os-release; echo "$PRETTY_NAME"))."
  echo "Every ratio is against a baseline measured in the same run; medians of alternating runs."
  echo
  echo "## Login-node latency (\`bench/login_latency.py\`)"
  echo
} > "$OUT"
"$PY" bench/login_latency.py --repeats 3 --out "$OUT"
"$PY" bench/plan_accuracy.py --out "$OUT"
"$PY" bench/core_overhead.py --repeats 3 --out "$OUT"
if [ "$(id -u)" = 0 ]; then
  "$PY" bench/scaling.py --out "$OUT"
else
  printf '\n## One node vs two\n\nSkipped: the dev cluster needs root.\n' >> "$OUT"
fi
printf '\nTotal time of this run: %s s.\n' "$(( $(date +%s) - start ))" >> "$OUT"
[ -z "$gpu_section" ] || printf '\n%s\n' "$gpu_section" >> "$OUT"
echo "wrote $OUT"

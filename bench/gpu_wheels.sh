#!/usr/bin/env bash
# Prepare, where pip reaches a package registry, the packages that the GPU machine lacks (it reaches none), for
# `bash bench/gpu_acceptance.sh` there. Its Python 3.12 has torch 2.11 (CUDA 13), transformers, accelerate, peft,
# pyarrow, pandas, fsspec, xxhash, huggingface-hub, cloudpickle, msgpack, ninja, py-cpuinfo, pyyaml, jinja2,
# packaging, psutil, tqdm, einops, nvidia-ml-py (the device notes' package list); missing: trl, datasets (+ dill,
# multiprocess), bitsandbytes, submitit, and deepspeed (an sdist, built there) with hjson and pydantic
# (+ pydantic-core, annotated-types, typing-inspection). No wandb: the acceptance runs have it disabled.
#   bash bench/gpu_wheels.sh              download into $GPU_WHEELS (.whl/, git-ignored), then the size guard
#   bash bench/gpu_wheels.sh --dry-run    print what would be downloaded, download nothing
#   bash bench/gpu_wheels.sh --check DIR  only the size guard, on DIR
# Versions: trl, datasets, bitsandbytes, submitit, deepspeed as pinned in hpc/environment.yml (tested together);
# their small dependencies at the versions installed in this checkout's .venv. Extra NAME==VERSION arguments are
# added (e.g. transformers==5.23.0 if the GPU machine's is too old for trl).
# Size guard: the wheels plus every other file that travels with the working tree must stay within 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=${GPU_WHEELS:-.whl}
LIMIT=$((64 * 1024 * 1024))
PINNED=(trl datasets bitsandbytes submitit deepspeed)
DEPS=(dill multiprocess hjson pydantic pydantic-core annotated-types typing-inspection)
PLATFORMS=(manylinux1_x86_64 manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64
           manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64)

bytes_of() {  # apparent size in bytes of the files named on stdin (one per line)
  local total=0 f
  while IFS= read -r f; do [ -f "$f" ] && total=$((total + $(stat -c %s "$f"))); done
  echo "$total"
}

guard() {  # guard DIR: DIR + the rest of the working tree that travels (tracked and untracked-not-ignored)
  local dir=$1 wheels tree
  wheels=$(find "$dir" -type f | bytes_of)
  tree=$(git ls-files -co --exclude-standard 2>/dev/null | grep -v "^${dir%/}/" | bytes_of || echo 0)
  awk -v d="$dir" -v n="$(find "$dir" -type f | wc -l)" -v w="$wheels" -v t="$tree" 'BEGIN { printf \
    "gpu_wheels: %s holds %d files, %.1f MiB; with the rest of the working tree %.1f MiB (limit 64 MiB)\n", \
    d, n, w / 1048576, (w + t) / 1048576 }'
  if [ $((wheels + tree)) -gt "$LIMIT" ]; then
    echo "gpu_wheels: over the 64 MiB a device call carries: drop an extra, or carry less" >&2
    return 1
  fi
}

pins() {  # NAME==VERSION for every package to fetch
  local name v
  for name in "${PINNED[@]}"; do
    v=$(sed -n "s/^ *- ${name}==\([^ ]*\)$/\1/p" hpc/environment.yml)
    [ -n "$v" ] || { echo "gpu_wheels: hpc/environment.yml pins no $name" >&2; exit 2; }
    echo "$name==$v"
  done
  for name in "${DEPS[@]}"; do
    v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) \
      || { echo "gpu_wheels: $name is not installed in $PY; cannot tell which version to fetch" >&2; exit 2; }
    echo "$name==$v"
  done
}

case "${1:-}" in
  --check)
    [ -d "${2:-}" ] || { echo "gpu_wheels: --check needs a folder" >&2; exit 2; }
    guard "$2"; exit ;;
  --dry-run)
    shift
    echo "gpu_wheels: would download into $DEST (cp312, manylinux x86_64 wheels; deepspeed as its sdist):"
    { pins; [ $# -eq 0 ] || printf '%s\n' "$@"; } | sed 's/^/  /'
    exit 0 ;;
esac

mapfile -t WANT < <(pins)
WANT+=("$@")
mkdir -p "$DEST"
rm -f "$DEST"/*.whl "$DEST"/*.tar.gz  # one version of each: two would stop the whole install there
plat=()
for p in "${PLATFORMS[@]}"; do plat+=(--platform "$p"); done
wheels=() sdists=()
for w in "${WANT[@]}"; do
  case "$w" in deepspeed==*) sdists+=("$w") ;; *) wheels+=("$w") ;; esac
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d "$DEST" "${wheels[@]}"
"$PY" -m pip download -q --no-deps --no-binary=:all: -d "$DEST" "${sdists[@]}"
ls -l "$DEST"
guard "$DEST"

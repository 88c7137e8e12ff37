#!/usr/bin/env bash
# Create .venv and install hpc-finetune with the training stack and the test tools.
#   bash hpc/setup.sh            (CPU torch 2.13.0 on a laptop or CI)
#   TORCH_SPEC='torch==2.13.0' bash hpc/setup.sh   (choose another torch, e.g. a CUDA build on a GPU node)
#   EXTRAS=train,test bash hpc/setup.sh          (leave out DeepSpeed)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" -e ".[${EXTRAS:-train,deepspeed,test}]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import hpc_finetune.train, torch, transformers, trl, peft; print('hpc-finetune', hpc_finetune.__version__, 'torch', torch.__version__)"

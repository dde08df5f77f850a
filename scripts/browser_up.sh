#!/usr/bin/env bash
# A headless browser for tests/browser: Debian's chromium + chromium-driver (no browser download by selenium)
# and selenium from PyPI, each installed only when missing. Idempotent; run as root for apt-get.
#   bash scripts/browser_up.sh [PYTHON]      (PYTHON: the interpreter whose environment gets selenium)
set -euo pipefail
PY=${1:-python3}
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" != 0 ]; then echo "browser_up: chromium/chromium-driver missing and not root: cannot apt-get" >&2; exit 2; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
if ! "$PY" -c "import selenium" 2>/dev/null; then
  "$PY" -m pip install -q "selenium>=4.20"
fi
echo "browser_up: $(chromium --version 2>/dev/null | head -1); $(chromedriver --version | head -1); selenium $("$PY" -c 'import selenium; print(selenium.__version__)')"

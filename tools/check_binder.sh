#!/usr/bin/env bash
# Does the Binder environment install and run? A fresh venv, binder/requirements.txt, binder/postBuild, then the
# imports the chapters need. Usage: bash tools/check_binder.sh [venv-dir]   (make binder-check)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-$(mktemp -d)/binder-venv}
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r binder/requirements.txt
PATH="$venv/bin:$PATH" bash binder/postBuild >/dev/null
"$venv/bin/python" -c "import normbook, d2l.torch, torch, torchvision, myst_nb, nbval; print('binder environment OK:', 'torch', torch.__version__, 'normbook', normbook.__version__)"

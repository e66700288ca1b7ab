#!/usr/bin/env bash
# Build the documentation site (HTML) with warnings as errors, then check
# every internal link and anchor of the built pages offline.
#
#   tools/docs.sh [OUTDIR]      default: docs/_build/html
#
# Needs the `docs` extra (sphinx, myst-parser, furo): pip install -e .[docs]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/docs/_build/html}
# the Python with the docs extra: $PYTHON, else the venv tools/install.sh
# made ($HPCDATA_VENV or .venv), else python3
venv=${HPCDATA_VENV:-$here/.venv}
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$venv/bin/python" ]; then python=$venv/bin/python; else python=python3; fi
fi
cd "$here"
# -E: read every page again (no stale environment); -n: nitpicky refs
"$python" -m sphinx -W --keep-going -E -n -q -b html docs "$out"
"$python" tools/docs_links.py "$out"
echo "docs: built $out"

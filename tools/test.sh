#!/usr/bin/env bash
# The test command: install/start what is needed, then run the whole suite
# against the real local Slurm cluster (a missing cluster is a failure here,
# not a skip).  Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${HPCDATA_VENV:-$here/.venv}
bash "$here/tools/install.sh"
export PATH="$venv/bin:$PATH"
export HPCDATA_REQUIRE_SLURM=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" tests

#!/usr/bin/env bash
# The test command: install/start what is needed, then run the whole suite
# against a real local Slurm cluster (a missing cluster is a failure here,
# not a skip).  Extra arguments go to pytest.
#
# The cluster is the multi-node instance of tools/slurm-cluster.sh: a
# controller and HPCDATA_TEST_NODES (default 3) nodes, each in its own
# network and UTS namespace, as instance HPCDATA_TEST_INSTANCE (default
# "ci", config /etc/slurm-ci); pytest sees it through SLURM_CONF.  It runs
# beside the default single-node cluster (tools/demo.sh) without touching it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${HPCDATA_VENV:-$here/.venv}
instance=${HPCDATA_TEST_INSTANCE:-ci}
nodes=${HPCDATA_TEST_NODES:-3}
bash "$here/tools/install.sh" --instance "$instance" up --nodes "$nodes"
export "$(bash "$here/tools/slurm-cluster.sh" --instance "$instance" env)"
export PATH="$venv/bin:$PATH"
export HPCDATA_REQUIRE_SLURM=1 HPCDATA_REQUIRE_MULTINODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@" tests

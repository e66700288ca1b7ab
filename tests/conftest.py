"""Shared fixtures: isolated DataLad config, a dataset, the real Slurm cluster.

The Slurm tests talk to the real cluster that ``SLURM_CONF`` (or the
default ``/etc/slurm``) names, started by ``tools/slurm-cluster.sh up``.
Without a usable cluster they skip, unless ``HPCDATA_REQUIRE_SLURM=1`` (set
by ``tools/test.sh``) makes that a failure.  The real-state tests need the
multi-node cluster (``tools/slurm-cluster.sh up --nodes 3``); they skip on
the single-node one unless ``HPCDATA_REQUIRE_MULTINODE=1`` (also set by
``tools/test.sh``).

Tests marked ``background`` wait for jobs submitted when the session starts
(a job that runs into its 1-minute time limit): they are moved to the end
of the run, so the rest of the suite runs meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from datalad.conftest import setup_package  # noqa: F401  (isolated HOME)
from slurmtest import (  # noqa: F401  (slurm_calls is a fixture)
    JOB_SH,
    STATE_SH,
    multinode_usable,
    slurm_calls,
    slurm_usable,
)

# submitted at session start by `background_jobs`, checked at the end
BACKGROUND_FIXTURES = ("timeout_job",)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "background: waits for a job started when the session "
        "started; runs last")


def pytest_collection_modifyitems(config, items):
    last = [i for i in items if i.get_closest_marker("background")]
    items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def slurm():
    ok, why = slurm_usable()
    if not ok:
        if os.environ.get("HPCDATA_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm cluster required but unusable: %s" % why)
        pytest.skip("no Slurm cluster (%s); run tools/slurm-cluster.sh up"
                    % why)
    return True


@pytest.fixture(scope="session")
def multinode(slurm):
    """The multi-node cluster with the state partitions, or skip/fail."""
    ok, why = multinode_usable()
    if not ok:
        if os.environ.get("HPCDATA_REQUIRE_MULTINODE") == "1":
            pytest.fail("multi-node Slurm cluster required but unusable: %s"
                        % why)
        pytest.skip("not the multi-node cluster (%s); run "
                    "tools/slurm-cluster.sh --instance NAME up --nodes 3 and "
                    "set SLURM_CONF" % why)
    from slurmtest import cluster_layout
    return cluster_layout()


def make_dataset(path: Path):
    """A dataset with code/job.sh (writes $1 from $2, exits $3),
    code/state.sh (sleeps $2 s, then writes where it ran to $1) and data/."""
    import datalad.api as dl
    ds = dl.create(str(path), result_renderer="disabled")
    root = Path(ds.path)
    (root / "code").mkdir()
    for name, text in (("job.sh", JOB_SH), ("state.sh", STATE_SH)):
        (root / "code" / name).write_text(text)
        (root / "code" / name).chmod(0o755)
    (root / "data").mkdir()
    (root / "data" / "in.txt").write_text("input data\n")
    ds.save(message="fixture", result_renderer="disabled")
    return ds


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds")


@pytest.fixture(scope="session")
def timeout_job(tmp_path_factory, setup_package):  # noqa: F811
    """(dataset, job id, node) of a job in partition `short` (MaxTime 1
    minute) that would sleep 5 minutes, scheduled when the session starts;
    None on a cluster without that partition."""
    import datalad.api as dl
    from slurmtest import cluster_layout
    if not multinode_usable()[0]:
        return None
    ds = make_dataset(tmp_path_factory.mktemp("timeout") / "ds")
    # node1: the node-failure and preemption tests use other nodes
    node = cluster_layout()["nodes"][0]
    res = dl.slurm_schedule(
        "sbatch -p short -w %s code/state.sh out/t.txt 300" % node,
        dataset=ds, outputs=["out/t.txt"], result_renderer="disabled",
        return_type="list", on_failure="ignore")
    ok = [r for r in res if r.get("status") == "ok"]
    assert len(ok) == 1, res
    return ds, ok[0]["slurm_job_id"], node


@pytest.fixture(scope="session", autouse=True)
def background_jobs(request, setup_package):  # noqa: F811
    """Start the background jobs early when a test in this run needs one."""
    wanted = {f for item in request.session.items
              for f in getattr(item, "fixturenames", ())
              if f in BACKGROUND_FIXTURES}
    for name in sorted(wanted):
        request.getfixturevalue(name)

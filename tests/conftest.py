"""Shared fixtures: isolated DataLad config, a dataset, the real Slurm cluster.

The Slurm tests talk to the real local cluster started by
``tools/slurm-cluster.sh up``.  Without a usable cluster they skip, unless
``HPCDATA_REQUIRE_SLURM=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from datalad.conftest import setup_package  # noqa: F401  (isolated HOME)
from slurmtest import JOB_SH, slurm_calls, slurm_usable  # noqa: F401


@pytest.fixture(scope="session")
def slurm():
    ok, why = slurm_usable()
    if not ok:
        if os.environ.get("HPCDATA_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm cluster required but unusable: %s" % why)
        pytest.skip("no Slurm cluster (%s); run tools/slurm-cluster.sh up"
                    % why)
    return True


@pytest.fixture
def dataset(tmp_path):
    """A dataset with code/job.sh (writes $1 from $2, exits $3) and data/."""
    import datalad.api as dl
    ds = dl.create(str(tmp_path / "ds"), result_renderer="disabled")
    root = Path(ds.path)
    (root / "code").mkdir()
    (root / "code" / "job.sh").write_text(JOB_SH)
    (root / "code" / "job.sh").chmod(0o755)
    (root / "data").mkdir()
    (root / "data" / "in.txt").write_text("input data\n")
    ds.save(message="fixture", result_renderer="disabled")
    return ds



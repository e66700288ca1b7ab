"""Staging area for ``--alt-dir``: stage inputs, copy back outputs, clean up.

The git repository stays on a local file system; a job reads its inputs from
and writes its outputs to ``ALT/<dataset-relative path>`` on the parallel file
system.  This package is the file-system half of that feature and knows
nothing about Slurm, the job store or git:

* :func:`check_alt_dir` validates (and creates) the staging root
  (:mod:`.location`);
* :func:`stage_inputs` copies input content into the staging area and
  :func:`prepare_output_dirs` makes it ready for the outputs (:mod:`.stage`);
* :func:`fetch_outputs` copies outputs and logs back into the dataset,
  verified and atomically per file (:mod:`.copyback`);
* :func:`cleanup` removes a job's staged files (:mod:`.clean`).

Copying never goes through a shell.  All dataset-relative paths are POSIX
paths in the canonical form of :mod:`datalad_hpcdata.dataset.paths`; outputs
may be glob specs (``res/run*/x.txt``), which are expanded in the staging
area.  Every function validates all paths before it changes anything and
raises :class:`StagingError` for unusable ones (:mod:`.files`).
"""

from __future__ import annotations

from .clean import cleanup
from .copyback import TAMPER_TOLERANCE, FetchReport, fetch_outputs
from .files import StagingError, staged_overlaps, staged_path
from .location import check_alt_dir
from .stage import StageReport, prepare_output_dirs, stage_inputs

__all__ = [
    "check_alt_dir",
    "stage_inputs",
    "prepare_output_dirs",
    "fetch_outputs",
    "cleanup",
    "StagingError",
    "StageReport",
    "FetchReport",
    "staged_path",
    "staged_overlaps",
    "TAMPER_TOLERANCE",
]

"""The Slurm cluster the commands talk to: the one SLURM_CONF selects."""

from __future__ import annotations

import os
import socket

from ..dataset.handle import DatasetHandle


def cluster_name(handle: DatasetHandle, submitted: str = "") -> str:
    """The cluster sbatch named, else the configured one (cached per host
    and Slurm configuration in the job store)."""
    if submitted:
        return submitted
    key = "cluster:%s:%s" % (socket.gethostname(),
                             os.environ.get("SLURM_CONF", ""))
    cached = handle.store.meta_get(key)
    if cached is None:
        cached = handle.backend.cluster_name()
        handle.store.meta_set(key, cached)
    return cached


def elsewhere(handle: DatasetHandle, jobs: list) -> tuple[str, list, list]:
    """(this cluster, jobs submitted to it or to an unnamed one, jobs
    submitted to another cluster).  Asking this cluster about the others
    would report whatever job has the same id here."""
    if not any(j.cluster for j in jobs):
        return "", list(jobs), []
    here = cluster_name(handle)
    if not here:
        return "", list(jobs), []
    ours = [j for j in jobs if not j.cluster or j.cluster == here]
    return here, ours, [j for j in jobs if j.cluster and j.cluster != here]

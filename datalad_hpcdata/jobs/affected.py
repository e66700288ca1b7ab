"""Which recorded jobs a change affects, in the order to run them again.

A recorded job is affected when something it read (an input, an extra
input or its sbatch script) lies in, under or over a changed path, or in,
under or over an output of an earlier affected job.  The history is read
once (one ``git log``); the walk is one pass over the records in history
order, so a job is only affected by what was recorded before it.

A record that a later affected record re-ran (its commit is in the later
record's ``chain``) is superseded: only the newest run is resubmitted.
The rest is put in data-flow order (producers first, ties broken by
history order), so each resubmission can wait for its producers.
"""

from __future__ import annotations

import bisect
import heapq
import os
from dataclasses import replace
from typing import Iterable

from ..dataset.git import git
from ..dataset.paths import PathError, canonical_spec, overlaps
from .dataflow import lookup_path, spec_overlaps
from .history import Recorded


class AffectedError(ValueError):
    """Bad --affected-by input; nothing was submitted."""


class PathIndex:
    """Canonical paths (and glob specs) -> values, answering "which stored
    paths overlap this one" without comparing against all of them."""

    def __init__(self):
        self._values: dict[str, list] = {}
        self._sorted: list[str] = []

    def add(self, path: str, value) -> None:
        key = lookup_path(path)
        if key not in self._values:
            self._values[key] = []
            bisect.insort(self._sorted, key)
        self._values[key].append((path, value))

    def __bool__(self) -> bool:
        return bool(self._sorted)

    def overlapping(self, path: str) -> list:
        """Values stored for paths that overlap `path` (maybe a glob)."""
        base = lookup_path(path)
        keys = set()
        if base == "":
            keys.update(self._sorted)
        else:
            parts = base.split("/")
            keys.update(k for k in ("/".join(parts[:i])
                                    for i in range(1, len(parts) + 1))
                        if k in self._values)
            lo = bisect.bisect_left(self._sorted, base + "/")
            hi = bisect.bisect_left(self._sorted, base + "0")
            keys.update(self._sorted[lo:hi])
            if "" in self._values:
                keys.add("")
        found = []
        for key in keys:
            for stored, value in self._values[key]:
                if spec_overlaps(path, stored) or spec_overlaps(
                        stored, path):
                    found.append(value)
        return found


def changed_paths(root: str, revision: str) -> list[str]:
    """What a commit changed (against its first parent)."""
    out = git(root, "diff-tree", "-r", "--root", "--no-commit-id",
              "--name-only", "-z", "-m", "--first-parent", revision).stdout
    return sorted({p for p in out.split("\0") if p})


def check_paths(handle, paths: Iterable[str], pwd: str, revision: str,
                records: list[Recorded]) -> list[str]:
    """Canonical forms of `paths`; AffectedError for paths outside the
    dataset and for paths that exist nowhere: not in the worktree, not in
    `revision` and named by no record."""
    out = []
    for path in paths:
        try:
            canon = canonical_spec(path, handle.root, pwd)
        except PathError as e:
            raise AffectedError("--affected-by %s" % e)
        if canon not in out:
            out.append(canon)
    index = PathIndex()
    for rec in records:
        for p in rec.reads + rec.produced:
            index.add(p, rec)
    unknown = [p for p in out if not index.overlapping(p)]
    if unknown:
        unknown = [p for p in unknown
                   if not os.path.lexists(os.path.join(handle.root, p))]
    if unknown:
        tracked = git(handle.root, "ls-tree", "-r", "--name-only", "-z",
                      revision, "--", *[lookup_path(p) for p in unknown]
                      ).stdout.split("\0")
        unknown = [p for p in unknown
                   if not any(overlaps(lookup_path(p), t) for t in tracked
                              if t)]
    if unknown:
        raise AffectedError(
            "unknown path%s %s: not in the dataset, not in %s and named by "
            "no record" % ("s" if len(unknown) > 1 else "",
                           ", ".join(repr(p) for p in unknown), revision))
    return out


def affected(records: list[Recorded], paths: list[str]) -> list[Recorded]:
    """The records whose reads derive from `paths`, history order.  An
    array whose tasks read inputs of their own (``-i 'params/%a'``) and
    whose shared reads are untouched is affected only in the tasks whose
    own inputs are: such a record comes back with `rerun_tasks`."""
    tainted = PathIndex()
    for p in paths:
        tainted.add(p, None)

    def touched(reads):
        return any(tainted.overlapping(r) for r in reads)

    hit = []
    for rec in records:
        per_task = rec.task_reads
        if per_task is None or touched(rec.shared_reads):
            if not touched(rec.reads):
                continue
        else:
            picked = sorted(int(t) for t, r in per_task.items()
                            if touched(r))
            if not picked:
                continue
            if len(picked) < len(per_task):
                rec = replace(rec, rerun_tasks=picked)
        hit.append(rec)
        for out in rec.produced:
            tainted.add(out, rec)
    return hit


def supersede(records: list[Recorded]) -> list[Recorded]:
    """Drop records a later one in `records` re-ran.  A re-run of some of
    an array's tasks (``--failed-tasks``/``--tasks``) does not stand for
    the whole array: the array stays, and the partial re-run is dropped
    when the array it re-ran is resubmitted itself."""
    shas = {r.sha for r in records}
    rerun, partial = set(), set()
    for rec in records:
        chain = rec.norm.get("chain") or []
        if rec.norm.get("array_override"):
            if chain and chain[-1] in shas:
                partial.add(rec.sha)
        else:
            rerun.update(chain)
    return [r for r in records if r.sha not in rerun | partial]


def data_flow_order(records: list[Recorded]) -> list[Recorded]:
    """Producers before consumers, otherwise history order.  Should the
    records form a cycle (a history rewritten by hand), it is broken in
    history order."""
    producers = PathIndex()
    for rec in records:
        for out in rec.produced:
            producers.add(out, rec.index)
    by_index = {r.index: r for r in records}
    needs = {r.index: set() for r in records}
    for rec in records:
        for path in rec.reads:
            needs[rec.index].update(
                i for i in producers.overlapping(path) if i != rec.index)
    users = {i: set() for i in needs}
    for i, ps in needs.items():
        for p in ps:
            users[p].add(i)
    ready = [i for i, ps in needs.items() if not ps]
    heapq.heapify(ready)
    order, placed = [], set()
    while len(order) < len(records):
        if not ready:     # a cycle: take the oldest record left
            ready = [min(i for i in needs if i not in placed)]
        i = heapq.heappop(ready)
        if i in placed:
            continue
        placed.add(i)
        order.append(by_index[i])
        for u in users[i]:
            needs[u].discard(i)
            if not needs[u] and u not in placed:
                heapq.heappush(ready, u)
    return order


def select(records: list[Recorded], paths: list[str],
           range_text: str) -> list[Recorded]:
    """The records to resubmit for a change of `paths`, in order."""
    hit = affected(records, paths)
    if not hit:
        raise AffectedError(
            "no recorded job in %s used %s (directly or through other "
            "recorded jobs' outputs)" % (
                range_text, ", ".join(repr(p) for p in paths)))
    return data_flow_order(supersede(hit))

"""Array jobs with per-task outputs: ``-o 'results/sim-%a'``.

An output spec may contain Slurm's file-pattern codes ``%a`` (the array
task id, ``%3a`` zero-padded) and ``%A`` (the array's job id); ``%%`` is a
literal ``%``.  Such a job must be an array (``--array`` on the command
line or ``#SBATCH --array`` in the script): the claim covers exactly the
paths of its task ids.  ``%A`` is not known before submission, so a
pattern with ``%A`` claims like a glob with ``*`` in its place (the
literal directory before it).  ``{outputs}`` and the run record keep the
pattern; the record lists the tasks.

At finish time the tasks are split by their state: the outputs and logs of
the COMPLETED tasks are committed, those of the others are left on disk
and reported (``--commit-failed-jobs`` commits them too, marked in the
record).  Outputs without a pattern are the whole array's: they are
committed only when every task completed (or with
``--commit-failed-jobs``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from ..dataset.paths import PathError, claim_path
from ..slurm import JobInfo
from ..slurm.argv import format_array, parse_array
from ..slurm.states import COMPLETED
from .errors import ScheduleError

# %a / %A with optional zero padding, not escaped as %%
TASK_CODE = re.compile(r"%(%|(\d*)([aA]))")


def is_pattern(spec: str) -> bool:
    """Does an output spec contain %a or %A?"""
    return any(m.group(3) for m in TASK_CODE.finditer(spec))


def expand(spec: str, task, master: str | None) -> str:
    """`spec` for one task: %a -> the task id, %A -> `master` (``*`` when
    not known yet), %% -> %."""
    def sub(m):
        if m.group(1) == "%":
            return "%"
        value = str(task) if m.group(3) == "a" else (master or "*")
        pad = m.group(2)
        return value.zfill(int(pad)) if pad and value.isdigit() else value
    return TASK_CODE.sub(sub, spec)


def split(specs: list[str]) -> tuple[list[str], list[str]]:
    """(the patterns, the other specs)."""
    return ([s for s in specs if is_pattern(s)],
            [s for s in specs if not is_pattern(s)])


def array_tasks(array: str | None, patterns: list[str],
                kind: str = "output") -> list[int]:
    """The task ids of per-task outputs (or inputs, `kind`); ScheduleError
    if the job is no array or its --array value cannot be read."""
    if not array:
        raise ScheduleError(
            "%s %s contains %%a/%%A (the array task id / array job id) "
            "but the job is not an array job: give --array on the sbatch "
            "command line or in an #SBATCH line" % (kind, ", ".join(
                repr(p) for p in patterns)))
    try:
        tasks, _ = parse_array(array)
    except ValueError as e:
        raise ScheduleError("--array: %s" % e)
    return tasks


def task_inputs(specs: list[str], tasks: list[int]) -> list[str]:
    """Input specs with per-task patterns (``%a``) expanded for `tasks`:
    what the job reads, to get, stage and look producers up for.
    ScheduleError for ``%A`` (the array's id is not known before it is
    submitted, so no task can read by it)."""
    for p in split(specs)[0]:
        if any(m.group(3) == "A" for m in TASK_CODE.finditer(p)):
            raise ScheduleError(
                "input %r contains %%A, the array's job id, which is not "
                "known before submission; use %%a (the task id)" % p)
    return list(dict.fromkeys(task_paths(specs, {}, tasks)))


def task_claims(patterns: list[str], tasks: list[int]) -> list[str]:
    """What the per-task outputs claim: one path per task and pattern."""
    claims = set()
    for pattern in patterns:
        for task in tasks:
            try:
                claims.add(claim_path(expand(pattern, task, None)))
            except PathError as e:
                raise ScheduleError("output %s" % e)
    return sorted(claims)


def output_specs(spec, tasks=None, master: str | None = None,
                 shared: bool = True) -> list[str]:
    """The canonical output specs of a job, per-task patterns expanded
    for `tasks` (default: all of the job's); ``*`` stands for an unknown
    %A.  Without `shared` the outputs without a pattern are left out."""
    patterns, others = split(spec.output_specs)
    if not patterns:
        return list(spec.output_specs)
    ids = spec.tasks if tasks is None else tasks
    out = list(others) if shared else []
    out += [expand(p, t, master) for t in ids for p in patterns]
    return out


def recorded_task_ids(record: dict) -> list[str] | None:
    """The task ids a run record's per-task outputs were written for:
    the tasks it lists, else those of the --array it ran with; None when
    the record says neither."""
    tasks = record.get("array_tasks")
    if isinstance(tasks, dict) and tasks:
        return sorted(tasks, key=lambda t: (len(t), t))
    array = record.get("array_override") or record.get("array_spec")
    try:
        return [str(t) for t in parse_array(array)[0]] if array else None
    except ValueError:
        return None


def task_paths(paths: list[str], record: dict, tasks=None) -> list[str]:
    """A recorded job's paths as it read or wrote them: per-task patterns
    expanded for `tasks` (default: the recorded ones; ``%A`` is the
    recorded job id); a pattern whose tasks the record does not give
    stands for any task (``*``, as a glob)."""
    patterns, others = split(paths)
    if not patterns:
        return list(paths)
    ids = ([str(t) for t in tasks] if tasks is not None
           else recorded_task_ids(record) or ["*"])
    master = record.get("slurm_job_id")
    master = str(master) if master is not None else None
    return others + [expand(p, t, master) for t in ids for p in patterns]


@dataclass
class TaskSplit:
    """The tasks of an ended array with per-task outputs, by outcome."""
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    commit_failed: bool = False

    @property
    def committed(self) -> list[int]:
        return sorted(self.completed + (self.failed if self.commit_failed
                                        else []))

    @property
    def complete(self) -> bool:
        return not self.failed


def split_tasks(info: JobInfo, commit_failed: bool) -> TaskSplit:
    """Sort an ended array's tasks into completed and failed ones."""
    out = TaskSplit(commit_failed=commit_failed)
    for task, tinfo in info.tasks.items():
        if not task.isdigit():
            continue
        (out.completed if tinfo.state_class == COMPLETED
         else out.failed).append(int(task))
    out.completed.sort()
    out.failed.sort()
    return out


def tasks_info(info: JobInfo, tasks: list[int]) -> JobInfo:
    """`info` with only these tasks (their logs are the ones committed)."""
    wanted = {str(t) for t in tasks}
    return replace(info, tasks={t: i for t, i in info.tasks.items()
                                if t in wanted})


def left_on_disk(root: str, specs: list[str]) -> list[str]:
    """The failed tasks' outputs that exist (dataset-relative)."""
    from ..dataset.paths import expand as hits
    return sorted({h for s in specs for h in hits(s, root)
                   if os.path.lexists(os.path.join(root, h))})


def subject_state(state: str, split_: TaskSplit | None) -> str:
    """The state word of an array commit's subject."""
    if split_ is None or split_.complete:
        return state
    total = len(split_.completed) + len(split_.failed)
    text = "%d of %d tasks completed" % (len(split_.completed), total)
    if split_.commit_failed:
        text += ", %d failed tasks committed" % len(split_.failed)
    return text


def record_keys(spec, info: JobInfo, split_: TaskSplit | None) -> dict:
    """Run record keys of an array: the --array asked for (and given
    instead, re-running some tasks); with per-task outputs each task's
    state, exit code and whether it was committed."""
    keys = {k: getattr(spec, k) for k in ("array_spec", "array_override")
            if getattr(spec, k)}
    if split_ is None:
        return keys
    committed = set(split_.committed)
    tasks = {}
    for t, i in info.tasks.items():
        if t.isdigit():
            tasks[t] = {"state": i.state, "exit_code": i.exit_code,
                        "slurm_job_id": i.job_id,
                        "committed": int(t) in committed}
    keys.update({"array_tasks": dict(sorted(tasks.items(),
                                            key=lambda kv: int(kv[0]))),
                 "task_outputs": True,
                 "failed_tasks": split_.failed,
                 "failed_tasks_committed": bool(split_.commit_failed
                                                and split_.failed)})
    return keys


def committed_outputs(spec, split_: TaskSplit | None,
                      master: str) -> list[str]:
    """The output specs a finish commits (all of them but for an array
    with failed tasks)."""
    if split_ is None:
        return list(spec.output_specs)
    return output_specs(spec, split_.committed, master,
                        shared=split_.complete or split_.commit_failed)


def logs_info(info: JobInfo, split_: TaskSplit | None) -> JobInfo:
    """What the committed Slurm logs are expanded from."""
    return info if split_ is None else tasks_info(info, split_.committed)


def not_committed(root: str, spec, split_: TaskSplit | None,
                  info: JobInfo, master: str) -> dict:
    """Result keys about the failed tasks a finish does not commit."""
    if split_ is None or split_.complete:
        return {}
    out = {"failed_tasks": split_.failed,
           "failed_tasks_committed": split_.commit_failed}
    if not split_.commit_failed:
        from .logs import job_logs
        specs = output_specs(spec, split_.failed, master, shared=False)
        specs += split(spec.output_specs)[1]    # the whole array's
        out["left_on_disk"] = sorted(set(left_on_disk(root, specs)) | set(
            job_logs(root, spec, master, tasks_info(info, split_.failed))))
    return out


def task_override(record: dict, failed: bool, wanted: str | None) -> str:
    """The --array of a re-run of some of a recorded array's tasks: its
    failed tasks, or the `wanted` ones (``3,17``, ``1-9:2``), with the
    recorded throttle.  ValueError when there are none or they are not
    the array's."""
    states = record.get("array_tasks") or {}
    asked = record.get("array_spec") or record.get("array") or ""
    try:
        ids, throttle = parse_array(asked) if asked else ([], None)
    except ValueError:
        ids, throttle = [], None
    known = set(ids) | {int(t) for t in states if t.isdigit()}
    if not known:
        raise ValueError("job %s is not an array job: there are no tasks to "
                         "re-run" % record.get("slurm_job_id"))
    if failed:
        pick = sorted(int(t) for t, v in states.items()
                      if t.isdigit() and v.get("state") != "COMPLETED")
        if not pick:
            raise ValueError("job %s has no failed tasks (every task "
                             "completed)" % record.get("slurm_job_id"))
    else:
        pick = parse_array(wanted)[0]
        unknown = sorted(set(pick) - known)
        if unknown:
            raise ValueError("task %s not in the array of job %s (%s)" % (
                ", ".join(map(str, unknown[:20])),
                record.get("slurm_job_id"), asked or "its recorded tasks"))
    return format_array(pick, throttle)


def failed_text(keys: dict) -> str:
    """What a finish result says about failed tasks (see
    :func:`not_committed`)."""
    failed = keys.get("failed_tasks")
    if not failed:
        return ""
    ids = ", ".join(map(str, failed[:20])) + (", ..." if len(failed) > 20
                                               else "")
    if keys.get("failed_tasks_committed"):
        return "; failed tasks %s committed too (marked in the record)" % ids
    left = keys.get("left_on_disk") or []
    return ("; failed tasks %s not committed (claims released), outputs "
            "left on disk: %s" % (ids, ", ".join(left[:20]) + (
                ", ..." if len(left) > 20 else "") if left else "none"))

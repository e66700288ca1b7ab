"""What a Slurm backend is: its interface and the records it returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from ..runner import CommandError
from .states import ACTIVE, classify, combine


class SlurmError(CommandError):
    """A Slurm command failed; the message carries Slurm's own words."""


class SubmissionError(SlurmError):
    """No job was submitted (nothing is claimed or changed)."""

    #: the Slurm limit or check that refused the job, when sbatch named one
    #: (e.g. ``QOSMaxSubmitJobPerUserLimit``, ``MaxJobCount``,
    #: ``invalid account``); empty otherwise
    limit: str = ""


@dataclass
class Submission:
    job_id: str
    cluster: str = ""
    stdout: str = ""
    stderr: str = ""


@dataclass
class JobInfo:
    """What Slurm says about one job (or one array task)."""

    job_id: str
    state: str = ""
    exit_code: str | None = None      # Slurm's "code:signal"
    submit_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    elapsed: str | None = None
    nodes: str | None = None
    max_rss: int | None = None        # bytes
    source: str = ""                  # sacct, squeue, scontrol, pyslurm
    tasks: dict = field(default_factory=dict)   # task id -> JobInfo

    @property
    def state_class(self) -> str:
        if self.tasks:
            return combine(t.state_class for t in self.tasks.values())
        return classify(self.state)

    @property
    def exit_status(self) -> int | None:
        """Shell-style exit status (128 + signal when killed by a signal)."""
        codes = ([t.exit_code for t in self.tasks.values()]
                 if self.tasks else [self.exit_code])
        worst = None
        for code in codes:
            if not code:
                continue
            rc, _, sig = code.partition(":")
            try:
                val = int(rc) or (128 + int(sig) if sig and int(sig) else 0)
            except ValueError:
                continue
            worst = val if worst is None else max(worst, val)
        return worst

    @property
    def summary_state(self) -> str:
        if not self.tasks:
            return self.state
        states = sorted({t.state for t in self.tasks.values()})
        if len(states) == 1:
            return states[0]
        if self.state_class == ACTIVE:
            return "ARRAY ACTIVE (%s)" % ", ".join(states)
        return "ARRAY %s (%s)" % (
            "COMPLETED" if self.state_class == "completed" else "FAILED",
            ", ".join(states))

    def as_dict(self) -> dict:
        # not dataclasses.asdict: its deep copy is most of the cost of
        # listing 10,000 jobs
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tasks"] = {k: v.as_dict() for k, v in self.tasks.items()}
        d["state_class"] = self.state_class
        d["exit"] = self.exit_status
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "JobInfo":
        d = dict(d)
        d.pop("state_class", None)
        d.pop("exit", None)
        tasks = {k: cls.from_dict(v) for k, v in d.pop("tasks", {}).items()}
        return cls(tasks=tasks, **d)


class Backend:
    """Interface: submit, query many jobs in one call, cancel, submit info.

    `calls` counts every request sent to Slurm (per tool or API call,
    retries included) over the backend's life: one command uses one
    backend, so this is the command's Slurm cost (docs/slurm-calls.md)."""

    name = "abstract"
    #: why accounting could not be asked in the last query (None: it
    #: answered); jobs missing from a query's result are then "not known
    #: yet", not "unknown to Slurm"
    accounting_error: str | None = None

    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def submit(self, argv: list[str], cwd: str, env=None,
               stdin: str | None = None) -> Submission:
        """Run the submission; `stdin` is a batch script sbatch reads
        from standard input (when argv names none)."""
        raise NotImplementedError

    def query(self, job_ids: list[str], since: float | None = None,
              steps: bool = True) -> dict[str, JobInfo]:
        """States and accounting details of many jobs with one query.

        `since` (epoch seconds) is the earliest submit time of the jobs
        asked about; accounting is searched from a margin before it to
        now instead of from the epoch.  With `steps` false only the jobs'
        own records are asked for (no per-step details such as MaxRSS):
        for slurmdbd that is one lookup instead of one per job.  Jobs
        Slurm does not know are absent from the result."""
        raise NotImplementedError

    def cancel(self, job_ids: list[str]) -> dict[str, str]:
        """Cancel every job, continuing past failures; returns
        {job id: why} for the jobs that could not be cancelled."""
        raise NotImplementedError

    def submit_info(self, job_id: str) -> dict:
        """StdOut/StdErr/WorkDir/ArrayTaskId/JobName of a submitted job."""
        raise NotImplementedError

    def cluster_name(self) -> str:
        raise NotImplementedError

    def find_submissions(self, tokens: list[str],
                         since: float) -> dict[str, str]:
        """token -> job id for jobs submitted (after `since`, epoch) with
        a token in their comment; SlurmError if Slurm cannot be asked."""
        raise SlurmError("the %s backend cannot look up submissions"
                         % self.name)

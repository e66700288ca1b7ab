"""What a Slurm backend is: its interface and the records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..runner import CommandError
from .states import ACTIVE, classify, combine


class SlurmError(CommandError):
    """A Slurm command failed; the message carries Slurm's own words."""


class SubmissionError(SlurmError):
    pass


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
    """Interface: submit, query many jobs in one call, cancel, submit info."""

    name = "abstract"

    def submit(self, argv: list[str], cwd: str, env=None) -> Submission:
        raise NotImplementedError

    def query(self, job_ids: list[str], steps: bool = True
              ) -> dict[str, JobInfo]:
        """States and accounting details of many jobs with one query.

        With `steps` false only the jobs' own records are asked for (no
        per-step details such as MaxRSS): for slurmdbd that is one lookup
        instead of one per job.  Jobs Slurm does not know are absent from
        the result."""
        raise NotImplementedError

    def cancel(self, job_ids: list[str]) -> None:
        raise NotImplementedError

    def submit_info(self, job_id: str) -> dict:
        """StdOut/StdErr/WorkDir/ArrayTaskId/JobName of a submitted job."""
        raise NotImplementedError

    def cluster_name(self) -> str:
        raise NotImplementedError

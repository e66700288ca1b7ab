"""pyslurm.db: accounting jobs, as pyslurm 24.11.0 / 25.11.2 present them.

The "database" is RECORDS: raw job records with the fields and encodings
of Slurm's ``slurmdb_job_rec_t`` as slurmdbd sends them (what
``tests/pyslurm_feed.py`` builds from sacct output):

  jobid, cluster, state (name), exitcode (a wait status), submit, start,
  end, elapsed (epoch seconds / seconds; 0 = none), nodes,
  array_job_id (0 = not an array), array_task_id (NO_VAL = none),
  array_task_str (accounting's hex mask of pending tasks, or None),
  array_max_tasks (0 = no throttle), het_job_id (0 = not heterogeneous),
  het_job_offset (NO_VAL = none), steps: [{"id", "max_rss" (bytes or
  None)}].

The properties parse them as pyslurm does (utils/uint.pyx u32_parse,
utils/ctime.pyx _raw_time, utils/helpers.pyx _get_exit_code):

* u32 values: NO_VAL -> None, INFINITE -> "UNLIMITED" and 0 -> None
  (``zero_is_noval``), which is why ``array_task_id`` of task 0 is None;
* ``heterogeneous_id``/``heterogeneous_offset`` parse with ``noval=0``,
  so a plain job's offset (NO_VAL) comes through as 4294967294 and a
  leader's offset 0 as None (25.11 only);
* times: 0 or NO_VAL -> None;
* exit code: killed by a signal -> (0, signal), else (status, 0) with 128
  taken off statuses >= 128;
* ``array_tasks_waiting``: the raw task string without any ``%N``;
* ``stats.resident_memory``: the largest ``max_resident_memory`` of the
  job's steps (0 when none reported), in bytes; there is no
  ``max_resident_memory`` on the job's statistics.

LOADS records every filter Jobs.load was called with.
"""

import importlib.metadata

NO_VAL = 0xfffffffe
INFINITE = 0xffffffff
LOCAL_CLUSTER = "hpcdata"

RECORDS = []
LOADS = []

_V24 = importlib.metadata.version("pyslurm").startswith("24.")


def _u32(val, noval=NO_VAL, zero_is_noval=True):
    if val == noval or (val == 0 and zero_is_noval):
        return None
    if val == INFINITE:
        return "UNLIMITED"
    return val


def _raw_time(val):
    return None if val in (0, NO_VAL) else (None if val == INFINITE
                                            else val)


def _exit(status):
    if status == NO_VAL:
        return 0, 0
    sig = status & 0x7f
    if sig and sig != 0x7f:
        return 0, sig
    code = (status >> 8) & 0xff
    return (code - 128 if code >= 128 else code), 0


class JobFilter:
    def __init__(self, **kwargs):
        self.ids = None
        self.start_time = None
        self.end_time = None
        self.clusters = None
        for k, v in kwargs.items():
            setattr(self, k, v)

    def _window(self):
        # date_to_timestamp: a falsy date means "not set" (0)
        return int(self.start_time or 0), int(self.end_time or 0)

    def _matches(self, rec):
        ids = {int(i) for i in self.ids or []}
        if ids and not (rec["jobid"] in ids or rec["het_job_id"] in ids
                        or rec["array_job_id"] in ids):
            return False
        start, end = self._window()
        if start or end:
            # slurmdbd, explicit job ids: submitted before the end and
            # not ended before the start
            end = end or 2 ** 62
            if not (rec["submit"] < end and
                    (rec["end"] >= start or rec["end"] == 0)):
                return False
        return True


JobSearchFilter = JobFilter


class JobStepStatistics:
    def __init__(self, max_rss):
        # TrackableResources.find_count_in_str(..., on_noval=0)
        self.max_resident_memory = max_rss or 0


class JobStep:
    def __init__(self, raw):
        self.id = raw["id"]
        self.stats = JobStepStatistics(raw.get("max_rss"))


class JobStatistics:
    def __init__(self):
        self.resident_memory = 0
        self.virtual_memory = 0
        self.elapsed_cpu_time = 0

    @staticmethod
    def from_steps(steps):
        total = JobStatistics()
        for step in steps.values():
            if step.stats.max_resident_memory > total.resident_memory:
                total.resident_memory = step.stats.max_resident_memory
        return total


class Job:
    def __init__(self, raw):
        self._r = dict(raw)
        self.steps = {s["id"]: JobStep(s) for s in raw.get("steps", [])}
        self.stats = JobStatistics.from_steps(self.steps)

    id = property(lambda self: self._r["jobid"])
    cluster = property(lambda self: self._r.get("cluster", LOCAL_CLUSTER))
    state = property(lambda self: self._r["state"])
    nodelist = property(lambda self: self._r.get("nodes"))
    array_id = property(lambda self: _u32(self._r["array_job_id"]))
    array_task_id = property(lambda self: _u32(self._r["array_task_id"]))
    array_tasks_parallel = property(
        lambda self: _u32(self._r.get("array_max_tasks", 0)))
    submit_time = property(lambda self: _raw_time(self._r["submit"]))
    start_time = property(lambda self: _raw_time(self._r["start"]))
    end_time = property(lambda self: _raw_time(self._r["end"]))
    elapsed_time = property(lambda self: _raw_time(self._r["elapsed"]))
    exit_code = property(lambda self: _exit(self._r["exitcode"])[0])
    exit_code_signal = property(lambda self: _exit(self._r["exitcode"])[1])

    @property
    def array_tasks_waiting(self):
        task_str = self._r.get("array_task_str")
        if not task_str:
            return None
        if "%" in task_str:
            task_str = task_str[:task_str.rindex("%")]
        return task_str

    def __repr__(self):
        return "pyslurm.db.Job(%d)" % self.id


class _Job25(Job):
    heterogeneous_id = property(
        lambda self: _u32(self._r["het_job_id"], noval=0))
    heterogeneous_offset = property(
        lambda self: _u32(self._r["het_job_offset"], noval=0))


class Jobs:
    """A MultiClusterMap: cluster -> {job id: Job}; values() flattens."""

    def __init__(self):
        self.data = {}

    def values(self):
        return [job for jobs in self.data.values() for job in jobs.values()]

    def __len__(self):
        return sum(len(jobs) for jobs in self.data.values())

    def get(self, key, default=None):
        cluster, jid = key
        return self.data.get(cluster, {}).get(jid, default)

    @staticmethod
    def load(db_filter=None, db_connection=None):
        db_filter = db_filter or JobFilter()
        LOADS.append(db_filter)
        out = Jobs()
        cls = Job if _V24 else _Job25
        for raw in RECORDS:
            if db_filter._matches(raw):
                job = cls(raw)
                out.data.setdefault(job.cluster, {})[job.id] = job
        return out

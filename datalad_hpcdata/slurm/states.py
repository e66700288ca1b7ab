"""Every job state Slurm reports, sorted into what slurm-finish does with it.

* ACTIVE: the job may still write its outputs -> keep it open, do nothing.
* COMPLETED: commit its outputs.
* FAILED: terminal without success -> report state and exit code, keep open
  unless the user closes (abandons) or commits it explicitly.
* UNKNOWN: Slurm does not know the job (purged, wrong cluster, typo).

A state string this table does not know (a newer Slurm) is treated as
ACTIVE: the safe choice, nothing is committed or closed on a guess.
"""

ACTIVE = "active"
COMPLETED = "completed"
FAILED = "failed"
UNKNOWN = "unknown"

STATE_CLASS = {
    # still running, or may run again
    "PENDING": ACTIVE,
    "RUNNING": ACTIVE,
    "COMPLETING": ACTIVE,      # epilog still running, outputs may still change
    "CONFIGURING": ACTIVE,
    "REQUEUED": ACTIVE,
    "REQUEUE_FED": ACTIVE,
    "REQUEUE_HOLD": ACTIVE,
    "RESIZING": ACTIVE,
    "SUSPENDED": ACTIVE,
    "STOPPED": ACTIVE,         # SIGSTOPed, still holds its allocation
    "STAGE_OUT": ACTIVE,       # burst buffer stage-out still copying
    "SIGNALING": ACTIVE,
    "RESV_DEL_HOLD": ACTIVE,
    "SPECIAL_EXIT": ACTIVE,    # requeued and held on purpose; can be released
    "POWER_UP_NODE": ACTIVE,
    "UPDATE_DB": ACTIVE,
    # done
    "COMPLETED": COMPLETED,
    # done, without success
    "FAILED": FAILED,
    "TIMEOUT": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "NODE_FAIL": FAILED,
    "CANCELLED": FAILED,
    "PREEMPTED": FAILED,       # terminal unless requeued (MAY_REQUEUE)
    "BOOT_FAIL": FAILED,
    "DEADLINE": FAILED,
    "REVOKED": FAILED,         # federation: this sibling will never run
    "LAUNCH_FAILED": FAILED,
}

# Terminal in accounting, but Slurm may have requeued the job (preemption
# with PreemptMode=REQUEUE, a node failure with JobRequeue): sacct shows
# this state for ~30 s while the controller has the job pending again
# (measured on Slurm 22.05), so the controller is asked too.
MAY_REQUEUE = frozenset({"PREEMPTED", "NODE_FAIL"})

SHORT = {
    "PD": "PENDING", "R": "RUNNING", "CG": "COMPLETING", "CF": "CONFIGURING",
    "RQ": "REQUEUED", "RF": "REQUEUE_FED", "RH": "REQUEUE_HOLD",
    "RS": "RESIZING", "S": "SUSPENDED", "ST": "STOPPED", "SO": "STAGE_OUT",
    "SI": "SIGNALING", "RD": "RESV_DEL_HOLD", "SE": "SPECIAL_EXIT",
    "CD": "COMPLETED", "F": "FAILED", "TO": "TIMEOUT", "OOM": "OUT_OF_MEMORY",
    "NF": "NODE_FAIL", "CA": "CANCELLED", "PR": "PREEMPTED", "BF": "BOOT_FAIL",
    "DL": "DEADLINE", "RV": "REVOKED",
}


def normalize_state(raw: str) -> str:
    """Slurm's state word without decorations or abbreviation:
    'CANCELLED by 0' -> 'CANCELLED', 'cd' -> 'COMPLETED', 'R+' -> 'RUNNING'."""
    word = (raw or "").strip().split(" ")[0].rstrip("+").upper()
    return SHORT.get(word, word)


def classify(state: str) -> str:
    state = normalize_state(state)
    if not state:
        return UNKNOWN
    return STATE_CLASS.get(state, ACTIVE)


def combine(classes) -> str:
    """Class of an array job from the classes of its tasks."""
    classes = list(classes)
    if not classes:
        return UNKNOWN
    if any(c == ACTIVE for c in classes):
        return ACTIVE
    if all(c == COMPLETED for c in classes):
        return COMPLETED
    if all(c == UNKNOWN for c in classes):
        return UNKNOWN
    return FAILED

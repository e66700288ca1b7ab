"""Pieces shared by the three command classes (parameters, rendering)."""

from __future__ import annotations

from datalad.distribution.dataset import EnsureDataset
from datalad.support.constraints import EnsureNone, EnsureStr
from datalad.support.param import Parameter
from datalad.ui import ui

dataset_opt = Parameter(
    args=("-d", "--dataset"),
    doc="""dataset the jobs belong to (default: the dataset containing the
    current directory).""",
    constraints=EnsureDataset() | EnsureNone())

alt_dir_opt = Parameter(
    args=("-a", "--alt-dir"),
    metavar="DIR",
    doc="""stage inputs to DIR (e.g. on the parallel file system) and run
    the job there; outputs are copied back by slurm-finish. Defaults to the
    configuration item 'datalad.hpcdata.alt-dir'.""",
    constraints=EnsureStr() | EnsureNone())


def render_result(res, **kwargs):
    """One readable line per result; the same keys stay in -f json."""
    status = res.get("status")
    action = res.get("action", "")
    msg = res.get("message")
    if isinstance(msg, tuple):
        msg = msg[0] % tuple(msg[1:])
    if action == "slurm-list-open-jobs":
        ui.message("{jid:>10}  {state:<24} {outs}".format(
            jid=str(res.get("slurm_job_id")),
            state=str(res.get("state")),
            outs=", ".join(res.get("outputs") or [])))
        return
    if res.get("dry_run") == "command":
        ui.message(res.get("cmd_expanded", ""))
        return
    if res.get("dry_run"):
        ui.message("slurm-schedule (dry run)\n  command: {c}\n  expanded: {e}"
                   "\n  pwd: {p}\n  inputs: {i}\n  outputs: {o}".format(
                       c=res.get("cmd"), e=res.get("cmd_expanded"),
                       p=res.get("pwd"), i=res.get("inputs"),
                       o=res.get("outputs")))
        return
    jid = res.get("slurm_job_id")
    ui.message("{action}({status}): {jid}{msg}".format(
        action=action, status=status,
        jid="job %s: " % jid if jid and msg and str(jid) not in msg else "",
        msg=msg or ""))

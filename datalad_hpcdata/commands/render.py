"""How the commands show their result records to people (one line each).

The same keys stay in ``-f json``.
"""

from __future__ import annotations

from datalad.ui import ui


def render_result(res: dict, **kwargs) -> None:
    """One readable line per result; the same keys stay in -f json."""
    status = res.get("status")
    action = res.get("action", "")
    msg = res.get("message")
    if isinstance(msg, tuple):
        msg = msg[0] % tuple(msg[1:])
    if action == "slurm-list-open-jobs":
        deps = res.get("depends_on")
        ui.message("%10s  %-24s %s%s" % (
            res.get("slurm_job_id"), res.get("state"),
            ", ".join(res.get("outputs") or []),
            "  (after %s)" % ", ".join(deps) if deps else ""))
        return
    if res.get("dry_run") == "command":
        ui.message(res.get("cmd_expanded", ""))
        return
    if res.get("dry_run"):
        ui.message("slurm-schedule (dry run)\n  command: %s\n  expanded: %s"
                   "\n  pwd: %s\n  inputs: %s\n  outputs: %s" % (
                       res.get("cmd"), res.get("cmd_expanded"),
                       res.get("pwd"), res.get("inputs"),
                       res.get("outputs")))
        return
    jid = res.get("slurm_job_id")
    ui.message("%s(%s): %s%s" % (
        action, status,
        "job %s: " % jid if jid and msg and str(jid) not in msg else "",
        msg or ""))

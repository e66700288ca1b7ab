"""The provenance graph: files and jobs, input -> job -> output.

Job nodes are the recorded jobs of a range of history (this extension's
and datalad-slurm's ``[DATALAD SLURM RUN]`` records, and ``datalad run``'s
``[DATALAD RUNCMD]`` records) and, on request, the open jobs of the job
store; file nodes are every path they name (dataset-relative).  Edges:
``input``/``extra_input``/``script`` from a file to the job that read it,
``output`` from a job to what it wrote, and ``part`` from an output to a
path a job read inside (or around) it, so that reading ``sims/a.txt`` of a
job that wrote ``sims`` is connected.  Recorded jobs carry their commit;
failed and open jobs are marked.  Rendered as Graphviz dot, mermaid or
JSON.
"""

from __future__ import annotations

import json

from ..dataset.handle import DatasetHandle
from .affected import PathIndex
from .history import RUN, read_history, root_paths, sbatch_script
from .tasks import is_pattern, task_paths

FORMATS = ("dot", "mermaid", "json")
STYLE = {   # status -> (dot fill colour, mermaid class)
    "completed": "#d9ead3",
    "failed": "#f4cccc",
    "open": "#fff2cc",
    "run": "#cfe2f3",
}


class Graph:
    def __init__(self):
        self.nodes: dict[str, dict] = {}
        self.edges: list[dict] = []
        self._edge_keys: set = set()
        # (path a job wrote or read, its file node): a per-task pattern's
        # node stands for every task's path
        self.written: list[tuple[str, str]] = []
        self.read: list[tuple[str, str]] = []

    def file(self, path: str) -> str:
        nid = "file:" + path
        self.nodes.setdefault(nid, {"id": nid, "type": "file",
                                    "path": path, "label": path})
        return nid

    def job(self, nid: str, **attrs) -> str:
        self.nodes[nid] = dict({"id": nid, "type": "job"}, **attrs)
        return nid

    def edge(self, src: str, dst: str, kind: str) -> None:
        key = (src, dst, kind)
        if key not in self._edge_keys:
            self._edge_keys.add(key)
            self.edges.append({"from": src, "to": dst, "type": kind})

    def link(self, job: str, inputs, extra, script, outputs,
             record: dict) -> None:
        """`record` says the tasks per-task `outputs` were written for
        (see tasks.task_paths)."""
        def paths_of(p):
            return task_paths([p], record) if is_pattern(p) else [p]

        for kind, paths in (("input", inputs), ("extra_input", extra),
                            ("script", [script] if script else [])):
            for p in paths:
                nid = self.file(p)
                self.edge(nid, job, kind)
                self.read += [(r, nid) for r in paths_of(p)]
        for p in outputs:
            nid = self.file(p)
            self.edge(job, nid, "output")
            self.written += [(w, nid) for w in paths_of(p)]

    def as_dict(self) -> dict:
        jobs = [n for n in self.nodes.values() if n["type"] == "job"]
        files = sorted((n for n in self.nodes.values()
                        if n["type"] == "file"), key=lambda n: n["path"])
        return {"nodes": jobs + files, "edges": self.edges}


def _state_status(state: str, kind: str) -> str:
    if kind == RUN:
        return "run" if state == "COMPLETED" else "failed"
    return "completed" if state == "COMPLETED" else "failed"


def _add_recorded(g: Graph, rec) -> None:
    state = rec.state
    source = ("datalad run" if rec.kind == RUN else
              "datalad-slurm" if rec.norm.get("from_peer") else
              "datalad-hpcdata")
    title = ("datalad run" if rec.kind == RUN
             else "Slurm job %s" % rec.job_id)
    subject = rec.subject.split("\n", 1)[0]
    # the user's message: a run record's subject, a Slurm record's body
    note = subject if rec.kind == RUN else rec.body.split("\n", 1)[0]
    label = "%s\n%s %s" % (title, state, rec.sha[:8])
    if note.strip():
        label += "\n" + (note[:40] + "..." if len(note) > 43 else note)
    nid = g.job("commit:" + rec.sha, label=label, source=source,
                status=_state_status(state, rec.kind), state=state,
                commit=rec.sha, slurm_job_id=rec.job_id,
                cmd=rec.norm.get("cmd"), subject=subject,
                depends_on=rec.record.get("depends_on") or [])
    g.link(nid, rec.inputs, rec.extra_inputs, rec.script, rec.outputs,
           rec.record)


def _add_open(g: Graph, handle: DatasetHandle) -> None:
    for job in handle.store.jobs():
        spec = job.spec
        pwd = spec.get("pwd") or "."
        extra = root_paths(pwd, spec.get("extra_inputs"))
        inputs = [p for p in spec.get("input_specs") or [] if p not in extra]
        state = (job.slurm or {}).get("state") or (
            "SUBMITTING" if job.status == "submitting" else "OPEN")
        title = ("Slurm job %s" % job.job_id if job.job_id
                 else "submission (row %d)" % job.row)
        note = (spec.get("message") or "").split("\n", 1)[0]
        nid = g.job("open:%s:%s" % (job.cluster, job.job_id or job.row),
                    label="%s\nopen: %s%s" % (title, state, "\n" + note[:43]
                                               if note else ""),
                    source="job store", status="open", state=state,
                    commit=None, slurm_job_id=job.job_id,
                    cmd=spec.get("cmd"), subject=spec.get("message") or "",
                    depends_on=[{k: d.get(k) for k in (
                        "slurm_job_id", "cluster", "inputs")}
                        for d in spec.get("depends_on") or []
                        if d.get("slurm_job_id")])
        g.link(nid, inputs, extra, sbatch_script(spec.get("cmd") or "", pwd),
               spec.get("output_specs") or [],
               {"array_tasks": {str(t): {} for t in spec.get("tasks") or []},
                "slurm_job_id": job.job_id})


def _add_parts(g: Graph) -> None:
    """Connect outputs to the paths read inside or around them."""
    outputs = PathIndex()
    for path, nid in g.written:
        outputs.add(path, nid)
    if not outputs:
        return
    for path, nid in g.read:
        for out in outputs.overlapping(path):
            if out != nid:
                g.edge(out, nid, "part")


def build(handle: DatasetHandle, revision: str = "HEAD",
          since: str | None = "", include_open: bool = False) -> Graph:
    g = Graph()
    for rec in read_history(handle, revision, since, with_runs=True):
        _add_recorded(g, rec)
    if include_open:
        _add_open(g, handle)
    _add_parts(g)
    return g


def _dot_str(s: str) -> str:
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"').replace(
        "\n", "\\n")


def to_dot(g: Graph) -> str:
    d = g.as_dict()
    lines = ["digraph provenance {", "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8, color="#555555"];']
    for n in d["nodes"]:
        if n["type"] == "file":
            attrs = 'shape=note, label=%s' % _dot_str(n["label"])
        else:
            style = "rounded,filled" + (",dashed" if n["status"] == "open"
                                        else "")
            attrs = 'shape=box, style="%s", fillcolor="%s", label=%s' % (
                style, STYLE[n["status"]], _dot_str(n["label"]))
        lines.append("  %s [%s];" % (_dot_str(n["id"]), attrs))
    extra = {"script": ' [style=dashed, label="script"]',
             "extra_input": ' [style=dashed]',
             "part": ' [style=dotted, arrowhead=none]'}
    for e in d["edges"]:
        lines.append("  %s -> %s%s;" % (_dot_str(e["from"]),
                                        _dot_str(e["to"]),
                                        extra.get(e["type"], "")))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_str(s: str) -> str:
    return '"%s"' % s.replace("&", "&amp;").replace('"', "&quot;").replace(
        "<", "&lt;").replace(">", "&gt;").replace("\n", "<br/>")


def to_mermaid(g: Graph) -> str:
    d = g.as_dict()
    ids = {n["id"]: "n%d" % i for i, n in enumerate(d["nodes"])}
    lines = ["flowchart LR"]
    for n in d["nodes"]:
        if n["type"] == "file":
            lines.append("  %s[/%s/]" % (ids[n["id"]],
                                         _mermaid_str(n["label"])))
        else:
            lines.append("  %s(%s):::%s" % (ids[n["id"]],
                                            _mermaid_str(n["label"]),
                                            n["status"]))
    arrows = {"script": "-. script .->", "extra_input": "-.->",
              "part": "---"}
    for e in d["edges"]:
        lines.append("  %s %s %s" % (ids[e["from"]],
                                     arrows.get(e["type"], "-->"),
                                     ids[e["to"]]))
    for status, colour in STYLE.items():
        lines.append("  classDef %s fill:%s" % (status, colour))
    return "\n".join(lines) + "\n"


def render(g: Graph, fmt: str) -> str:
    if fmt == "dot":
        return to_dot(g)
    if fmt == "mermaid":
        return to_mermaid(g)
    return json.dumps(g.as_dict(), indent=1, sort_keys=True) + "\n"


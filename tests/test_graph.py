"""`datalad slurm-graph`, checked node by node and edge by edge.

The history mixes every kind of record the graph reads: this extension's
(one with depends_on, one failed), datalad-slurm's, and a real
`datalad run`; one open job is a real held job on the local cluster."""

from __future__ import annotations

import json
import shutil
import subprocess

import datalad.api as dl
import pytest
from slurmtest import KW, cluster_layout, one

pytestmark = pytest.mark.slurm


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout


def commit(ds, subject, record):
    git(ds, "commit", "--allow-empty", "-q", "-m",
        "%s\n\n=== Do not change lines below ===\n%s\n"
        "^^^ Do not change lines above ^^^\n"
        % (subject, json.dumps(record, indent=1)))
    return git(ds, "rev-parse", "HEAD").strip()


def ours(ds, job, cmd, inputs, outputs, state="COMPLETED", **extra):
    rec = dict(cmd=cmd, dsid=ds.id, exit=0 if state == "COMPLETED" else 1,
               inputs=inputs, extra_inputs=[], outputs=outputs, pwd=".",
               chain=[], slurm_job_id=job, slurm_outputs=[],
               slurm_state=state, cluster="hpcdata",
               extension="datalad-hpcdata", **extra)
    return commit(ds, "[DATALAD SLURM RUN] Slurm job %d: %s" % (
        job, state.capitalize()), rec)


@pytest.fixture
def campaign(slurm, dataset):
    ds = dataset
    sha = {}
    sha["s1"] = ours(ds, 101, "sbatch code/sim.sh {outputs}",
                     ["data/in.txt"], ["sims/a"])
    sha["s2"] = commit(ds, "[DATALAD SLURM RUN] Slurm job 102: Completed", {
        "alt_dir": "", "chain": [], "cmd": "sbatch code/sim.sh b",
        "dsid": ds.id, "extra_inputs": [], "inputs": ["data/in.txt"],
        "outputs": ["./sims/b.txt", "slurm-102.out",
                    "slurm-job-102.env.json"],
        "pwd": ".", "slurm_job_id": 102,
        "slurm_outputs": ["slurm-102.out", "slurm-job-102.env.json"]})
    sha["s3"] = ours(ds, 103, "sbatch --time=5 code/train.sh",
                     ["sims/a/x.txt", "sims/b.txt"], ["model.txt"],
                     depends_on=[{"slurm_job_id": 101, "cluster": "hpcdata",
                                  "commit": "1" * 40,
                                  "inputs": ["sims/a/x.txt"]}])
    sha["s4"] = ours(ds, 104, "sbatch code/eval.sh", ["model.txt"],
                     ["eval/score.txt"], state="FAILED")
    res = ds.run(["sh", "-c", "cat data/in.txt > notes.txt"],
                 inputs=["data/in.txt"], outputs=["notes.txt"],
                 message="take notes", result_renderer="disabled")
    assert res
    sha["r5"] = git(ds, "rev-parse", "HEAD").strip()
    r = one(dl.slurm_schedule("sbatch --hold code/job.sh {outputs} {inputs}",
                              dataset=ds, inputs=["notes.txt"],
                              outputs=["report.txt"], **KW),
            action="slurm-schedule")
    assert r["status"] == "ok"
    yield ds, sha, r["slurm_job_id"]
    subprocess.run(["scancel", r["slurm_job_id"]])


def graph(ds, **kw):
    r = one(dl.slurm_graph(dataset=ds, **dict(KW, **kw)),
            action="slurm-graph")
    assert r["status"] == "ok", r
    return r


def cluster() -> str:
    """The name of the cluster the tests run on (SLURM_CONF's)."""
    return cluster_layout()["cluster"]


def test_graph_nodes_and_edges(campaign):
    ds, sha, open_id = campaign
    r = graph(ds, include_open=True, format="json")
    nodes = {n["id"]: n for n in r["nodes"]}
    job = {k: "commit:" + v for k, v in sha.items()}
    job["open"] = "open:%s:%s" % (cluster(), open_id)
    files = ["code/eval.sh", "code/job.sh", "code/sim.sh", "code/train.sh",
             "data/in.txt", "eval/score.txt", "model.txt", "notes.txt",
             "report.txt", "sims/a", "sims/a/x.txt", "sims/b.txt"]
    # jobs in history order (open last), then files sorted by path
    assert [n["id"] for n in r["nodes"]] == [
        job[k] for k in ("s1", "s2", "s3", "s4", "r5", "open")] + [
        "file:" + f for f in files]
    expect = {
        "s1": ("datalad-hpcdata", "completed", "COMPLETED", 101),
        "s2": ("datalad-slurm", "completed", "COMPLETED", 102),
        "s3": ("datalad-hpcdata", "completed", "COMPLETED", 103),
        "s4": ("datalad-hpcdata", "failed", "FAILED", 104),
        "r5": ("datalad run", "run", "COMPLETED", None),
        "open": ("job store", "open", "OPEN", open_id),
    }
    for k, (source, status, state, jid) in expect.items():
        n = nodes[job[k]]
        assert (n["type"], n["source"], n["status"], n["state"],
                n["slurm_job_id"]) == ("job", source, status, state, jid), k
        assert n["commit"] == (sha.get(k) if k != "open" else None)
    assert nodes[job["s1"]]["label"] == "Slurm job 101\nCOMPLETED %s" % (
        sha["s1"][:8])
    assert nodes[job["r5"]]["label"] == "datalad run\nCOMPLETED %s\n" \
        "take notes" % sha["r5"][:8]
    assert nodes[job["open"]]["label"] == "Slurm job %s\nopen: OPEN" % (
        open_id)
    assert nodes[job["s3"]]["depends_on"][0]["slurm_job_id"] == 101
    for f in files:
        assert nodes["file:" + f] == {"id": "file:" + f, "type": "file",
                                      "path": f, "label": f}
    f = {p: "file:" + p for p in files}
    assert [(e["from"], e["to"], e["type"]) for e in r["edges"]] == [
        (f["data/in.txt"], job["s1"], "input"),
        (f["code/sim.sh"], job["s1"], "script"),
        (job["s1"], f["sims/a"], "output"),
        (f["data/in.txt"], job["s2"], "input"),
        (f["code/sim.sh"], job["s2"], "script"),
        (job["s2"], f["sims/b.txt"], "output"),
        (f["sims/a/x.txt"], job["s3"], "input"),
        (f["sims/b.txt"], job["s3"], "input"),
        (f["code/train.sh"], job["s3"], "script"),
        (job["s3"], f["model.txt"], "output"),
        (f["model.txt"], job["s4"], "input"),
        (f["code/eval.sh"], job["s4"], "script"),
        (job["s4"], f["eval/score.txt"], "output"),
        (f["data/in.txt"], job["r5"], "input"),
        (job["r5"], f["notes.txt"], "output"),
        (f["notes.txt"], job["open"], "input"),
        (f["code/job.sh"], job["open"], "script"),
        (job["open"], f["report.txt"], "output"),
        (f["sims/a"], f["sims/a/x.txt"], "part"),
    ]
    assert r["jobs"] == 6 and r["files"] == len(files)


def test_graph_range_open_state_and_formats(campaign, tmp_path):
    ds, sha, open_id = campaign
    r = graph(ds, since=sha["s2"], format="json")
    assert [n["id"] for n in r["nodes"] if n["type"] == "job"] == [
        "commit:" + sha[k] for k in ("s3", "s4", "r5")]
    # the state slurm-finish saw last is shown for open jobs
    dl.slurm_finish(dataset=ds, list_open_jobs=True, **KW)
    r = graph(ds, include_open=True, format="json")
    n = [n for n in r["nodes"]
         if n["id"] == "open:%s:%s" % (cluster(), open_id)][0]
    assert n["state"] == "PENDING" and n["label"].endswith("open: PENDING")
    # dot: written to a file, accepted by Graphviz
    out = tmp_path / "g.dot"
    r = graph(ds, include_open=True, output=str(out))
    assert r["path"] == str(out) and "graph" not in r
    dot = out.read_text()
    assert dot.startswith("digraph provenance {")
    assert '"commit:%s" [shape=box, style="rounded,filled", ' \
        'fillcolor="#f4cccc"' % sha["s4"] in dot
    assert 'style="rounded,filled,dashed", fillcolor="#fff2cc"' in dot
    assert '"file:code/sim.sh" -> "commit:%s" [style=dashed, ' \
        'label="script"];' % sha["s1"] in dot
    assert shutil.which("dot"), "Graphviz (Debian package graphviz) needed"
    png = tmp_path / "g.png"
    subprocess.run(["dot", "-Tpng", str(out), "-o", str(png)], check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # mermaid on stdout (the result carries the text)
    r = graph(ds, format="mermaid")
    lines = r["graph"].splitlines()
    assert lines[0] == "flowchart LR"
    assert '  n3("Slurm job 104<br/>FAILED %s"):::failed' % sha["s4"][:8] \
        in lines
    # ids: the 5 recorded jobs n0-n4, then the files in path order
    assert lines[6:8] == ['  n5[/"code/eval.sh"/]', '  n6[/"code/sim.sh"/]']
    assert "  n6 -. script .-> n0" in lines and "  n0 --> n12" in lines
    assert lines[13] == '  n12[/"sims/a"/]' and "  n12 --- n13" in lines
    assert "  classDef failed fill:#f4cccc" in lines


def test_graph_command_line_and_bad_revision(campaign):
    ds, sha, _ = campaign
    out = subprocess.run(["datalad", "slurm-graph", "-d", ds.path,
                          "--format", "mermaid", "--since", sha["s3"]],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("flowchart LR\n") and "Slurm job 104" in out
    assert "Slurm job 103" not in out
    r = one(dl.slurm_graph("nosuchrev", dataset=ds, **KW),
            action="slurm-graph")
    assert r["status"] == "impossible" and "unknown revision" in r["message"]

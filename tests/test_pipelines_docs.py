"""The examples of docs/pipelines.md, run block by block on the real
cluster (tools/pipeline_example.py), and what they must have done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import pipeline_example  # noqa: E402

from datalad_hpcdata.jobs.record import parse_message  # noqa: E402

pytestmark = pytest.mark.slurm


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds, capture_output=True,
                          text=True, check=True).stdout


def test_the_pipelines_page_runs(slurm, tmp_path):
    out = pipeline_example.run_example(tmp_path)
    ds = tmp_path / "campaign"
    assert len(out) == len(pipeline_example.blocks()) == 8
    # scheduled in one go: the consumers say what they wait for
    sched = out[1]
    assert sched.count("slurm-schedule(ok)") == 4
    assert sched.count("waits for") == 2
    assert "(after " in sched
    # every record of the history, oldest first: the campaign's 4, then
    # (after the fix commit) the 3 resubmitted jobs
    shas, recs = [], []
    for sha in git(ds, "rev-list", "--reverse", "HEAD").split():
        parsed = parse_message(git(ds, "log", "-1", "--format=%B", sha))
        if parsed:
            shas.append(sha)
            recs.append(parsed)
    assert len(recs) == 7
    # one finish, data-flow order, records naming the producers' commits
    assert [m.split("\n")[-1] for m, _ in recs[:4]] == [
        "simulate a", "simulate b", "train", "evaluate"]
    assert out[3].count("slurm-finish(ok): committed job") == 4
    train, evaluate = recs[2][1], recs[3][1]
    assert [d["commit"] for d in train["depends_on"]] == shas[:2]
    assert [d["commit"] for d in evaluate["depends_on"]] == [shas[2]]
    assert train["inputs"] == ["sims"]
    # the plan: simulation a, training, evaluation; not simulation b
    report = out[4]
    assert report.count("would resubmit") == 3
    assert "would resubmit %s" % shas[0][:10] in report
    assert "params/b.txt" not in report
    assert report.count("waits for: the resubmission of") == 2
    # resubmitted and finished: the new model saw the fix
    assert out[5].count("slurm-reschedule(ok)") == 3
    assert out[5].count("; waits for") == 2
    assert out[6].strip().endswith("4")
    sim_a, train, evaluate = [r for _, r in recs[4:]]
    new = shas[4:]
    # only simulation a was open: b's output was committed already (it is
    # in the record's submit_head)
    assert [d["commit"] for d in train["depends_on"]] == [new[0]]
    assert git(ds, "merge-base", "--is-ancestor", shas[1],
               train["submit_head"]) == ""
    assert train["chain"] == [shas[2]] and sim_a["chain"] == [shas[0]]
    assert [d["commit"] for d in evaluate["depends_on"]] == [new[1]]
    assert (ds / "models" / "model.txt").read_text() == (
        "sim alpha 1\nsim beta 2\nsim delta 4\nsim gamma 3\n")
    # the graph, rendered by Graphviz, and as mermaid
    assert (ds / "campaign.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = (ds / "campaign.dot").read_text()
    assert dot.count("shape=box") == 7 and '"file:sims"' in dot
    assert "slurm-graph(ok): wrote the graph (7 jobs, " in out[7]
    assert "flowchart LR" in out[7]

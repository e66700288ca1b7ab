"""docs/tutorial.md, run on the real cluster: every command in order in one
shell (the docs harness of tests/test_docs.py), its outputs as the page
shows them, and what the commands did to the dataset as the page says."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs import (
    DOCS,
    ELSEWHERE,
    check_steps,
    differences,
    page_script,
    parse_page,
    run_steps,
    scenario_env,
)

from datalad_hpcdata.jobs.record import parse_message

REPO = Path(__file__).resolve().parents[1]
PAGE = DOCS / "tutorial.md"
sys.path.insert(0, str(REPO / "tools"))

import tutorial_example  # noqa: E402

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def tutorial(slurm, tmp_path_factory):
    """(the harness's Run, the directory it ran in)"""
    work = tmp_path_factory.mktemp("tutorial")
    env = scenario_env("slurm", work, None)
    return run_steps(parse_page(PAGE), work, env), work


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds, capture_output=True,
                          text=True, check=True).stdout


def records(ds):
    """[(commit, message, record)] of the history, oldest first."""
    out = []
    for sha in git(ds, "rev-list", "--reverse", "HEAD").split():
        parsed = parse_message(git(ds, "log", "-1", "--format=%B", sha))
        if parsed:
            out.append((sha, parsed[0].splitlines()[-1], parsed[1]))
    return out


def test_the_page_is_run_here():
    assert ELSEWHERE["tutorial.md"] == "tests/test_tutorial.py"
    page = parse_page(PAGE)
    assert page.scenario == "slurm"
    assert not [b for b in page.blocks if b.skip]
    commands = "\n".join(b.text for b in page.blocks)
    for needed in ("--array=", "slurm-finish --wait", "--affected-by ",
                   "--affected-by-commit", "slurm-graph", "dot -Tpng"):
        assert needed in commands, needed


def test_outputs_are_what_the_page_shows(tutorial):
    check_steps(tutorial[0])


def test_a_wrong_line_on_the_page_is_found(tutorial):
    """The comparison can fail: a changed number, a different order of
    commits, a missing line."""
    run = tutorial[0]

    def edit(step_has, change):
        steps = []
        for block, cmd, expected in run.steps:
            if expected and any(step_has in line for line in expected):
                expected = change(list(expected))
            steps.append((block, cmd, expected))
        return differences(dataclasses.replace(run, steps=steps))

    score = edit("mean absolute error 0.583",
                 lambda lines: [line.replace("0.583", "0.584")
                                for line in lines])
    assert len(score) == 1 and "0.584" in score[0], score
    report = "would resubmit"
    swapped = edit(report, lambda lines: lines[4:8] + lines[:4] + lines[8:])
    assert len(swapped) == 1 and "--report" in swapped[0], swapped
    # in a block of any order: a changed line, a missing line
    first_finish = "4 of 4 jobs ended"
    failed = edit(first_finish, lambda lines: [
        lines[0].replace("(COMPLETED)", "(FAILED)")] + lines[1:])
    assert len(failed) == 1 and "--wait" in failed[0], failed
    assert edit(first_finish, lambda lines: lines[:-1])
    assert differences(run) == []


def test_exactly_the_affected_jobs_ran_again(tutorial):
    ds = tutorial[1] / "campaign"
    recs = records(ds)
    # the first run: the two arrays in the order they ended, then the
    # training, then the evaluation
    order = ["simulate: training set", "simulate: test set", "train",
             "evaluate"]
    assert sorted(m for _, m, _ in recs[:4]) == sorted(order)
    assert [m for _, m, _ in recs[2:4]] == ["train", "evaluate"] or \
        [m for _, m, _ in recs[1:4]] == ["train", "simulate: test set",
                                         "evaluate"]
    by_name = {m: (sha, r) for sha, m, r in recs[:4]}
    first = [by_name[m][0] for m in order]
    sims, test_sims, train, evaluate = [by_name[m][1] for m in order]
    # of the training-set array only task 2, the one that read the fix
    assert [m for _, m, _ in recs[4:]] == [
        "Re-submission of tasks 2 of job %s." % sims["slurm_job_id"]] + [
        "Re-submission of job %s." % r["slurm_job_id"]
        for r in (train, evaluate)]
    assert sims["array"] == "1-4" and len(sims["array_tasks"]) == 4
    assert test_sims["array"] == "1-3"
    assert [d["commit"] for d in train["depends_on"]] == [first[0]]
    assert [d["commit"] for d in evaluate["depends_on"]] == first[1:3]
    # the fix commit lies between the runs; the re-runs chain to the jobs
    # they re-ran, and the new evaluation read the old test set (committed
    # before: in its submit_head), the new model
    fix = git(ds, "log", "-1", "--format=%s", recs[4][0] + "~1").strip()
    assert fix.startswith("fix params/train/p2.txt")
    again = [sha for sha, _, _ in recs[4:]]
    new_sims, new_train, new_eval = [r for _, _, r in recs[4:]]
    assert new_sims["chain"] == [first[0]]
    assert new_sims["array_override"] == "2"
    assert list(new_sims["array_tasks"]) == ["2"]
    assert new_train["chain"] == [first[2]]
    assert new_eval["chain"] == [first[3]]
    assert [d["commit"] for d in new_train["depends_on"]] == [again[0]]
    assert [d["commit"] for d in new_eval["depends_on"]] == [again[1]]
    git(ds, "merge-base", "--is-ancestor", first[1], new_eval["submit_head"])
    # what the fix changed, in the files the jobs wrote
    assert (ds / "sims" / "train" / "sim-2.txt").read_text() == "2 4\n"
    # the other tasks' simulations were committed once, by the first run
    for n in (1, 3, 4):
        assert git(ds, "log", "--format=%s", "--",
                   "sims/train/sim-%d.txt" % n).count("Slurm job") == 1
    assert (ds / "models" / "model.txt").read_text() == \
        "a=5.000 b=-5.000 n=4\n"
    assert git(ds, "log", "--format=%s", "--", "sims/test").count(
        "Slurm job") == 1
    assert git(ds, "status", "--porcelain") == ""


def test_the_graphs_before_and_after(tutorial):
    work = tutorial[1]
    before = (work / "campaign-before.dot").read_text()
    after = (work / "campaign-after.dot").read_text()
    assert before.count("shape=box") == 4 and after.count("shape=box") == 7
    assert '"file:params/test/p%a.txt"' in after
    assert '"file:eval/score.txt"' in after
    text = PAGE.read_text()
    for made, shown in tutorial_example.GRAPHS.items():
        assert (work / made).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (DOCS / shown).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shown
        assert "](%s)" % shown in text, shown


def test_the_page_update_keeps_it_consistent(tutorial, tmp_path):
    """tools/tutorial_example.py --update writes a run's outputs into the
    page; the page it writes agrees with that run."""
    run = tutorial[0]
    page = tmp_path / "tutorial.md"
    page.write_text(tutorial_example.updated(PAGE.read_text(), run))
    rewritten = page_script(parse_page(page))[1]
    assert [cmd for _, cmd, _ in rewritten] == [cmd for _, cmd, _ in
                                                run.steps]
    check_steps(dataclasses.replace(run, steps=rewritten, ids={
        k: k for k in run.ids.values()}))

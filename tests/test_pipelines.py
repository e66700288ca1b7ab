"""Pipelines on the real cluster: jobs that read other open jobs' outputs,
finishing in data-flow order, blocked consumers, re-running what a change
affects (issue 11)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import datalad.api as dl
import pytest
from slurmtest import KW, one, store_snapshot, text, wait_jobs

from datalad_hpcdata.dataset.handle import DatasetHandle
from datalad_hpcdata.jobs.cluster import cluster_name
from datalad_hpcdata.jobs.record import parse_message

pytestmark = pytest.mark.slurm


MERGE_SH = """#!/bin/sh
# merge.sh OUT IN...: OUT = the inputs (files, or the files of directories)
set -e
out=$1; shift
mkdir -p "$(dirname "$out")"
for f in "$@"; do
  if [ -d "$f" ]; then cat "$f"/*; else cat "$f"; fi
done > "$out.tmp"
echo "job $SLURM_JOB_ID" >> "$out.tmp"
mv "$out.tmp" "$out"
"""


def schedule(ds, cmd, **kw):
    return dl.slurm_schedule(cmd, dataset=ds, **dict(KW, **kw))


def finish(ds, **kw):
    return dl.slurm_finish(dataset=ds, **dict(KW, **kw))


def submitted(res):
    r = one(res, action="slurm-schedule")
    assert r["status"] == "ok", r
    return r


def jid(res):
    return submitted(res)["slurm_job_id"]


def git(ds, *args):
    return subprocess.run(["git", *args], cwd=ds.path, capture_output=True,
                          text=True, check=True).stdout


def records(ds, base):
    """[(sha, record)] of the commits base..HEAD, oldest first."""
    out = []
    for sha in git(ds, "rev-list", "--reverse", base + "..HEAD").split():
        parsed = parse_message(git(ds, "log", "-1", "--format=%B", sha))
        out.append((sha, parsed[1] if parsed else None))
    return out


def by_job(recs):
    return {str(r["slurm_job_id"]): (sha, r) for sha, r in recs if r}


def scontrol_dependency(job):
    out = subprocess.run(["scontrol", "show", "job", "-o", job],
                         capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith("Dependency="):
            return word[len("Dependency="):]
    return None


def release(*jobs):
    subprocess.run(["scontrol", "release", ",".join(jobs)], check=True)


def wait_reason(job, reason, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T|%r"],
                             capture_output=True, text=True).stdout.strip()
        if out == "PENDING|%s" % reason:
            return
        time.sleep(0.3)
    raise TimeoutError("job %s not %s: %r" % (job, reason, out))


def finish_until(ds, jobs, timeout=60.0, **kw):
    """finish until every job in `jobs` is committed (arrays need a few
    seconds until accounting lists their tasks); all results."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        res = finish(ds, **kw)
        seen += res
        done = {r["slurm_job_id"] for r in seen if r.get("commit")}
        if set(jobs) <= done or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def finish_producer_consumer(ds, a, b):
    """Wait for producer `a` (writes "new" to mid.txt) and its consumer `b`
    (code/job.sh final.txt mid.txt); one finish commits both, producer
    first, and final.txt is what `b` made of the new mid.txt."""
    wait_jobs([a, b])
    res = finish(ds)
    assert [r["slurm_job_id"] for r in res if r["status"] == "ok"] == [a, b]
    assert Path(ds.path, "final.txt").read_text() == \
        "new\njob %s arg final.txt\n" % b


@pytest.fixture
def pipe(dataset):
    """The dataset plus code/merge.sh; afterwards every job of it still
    open is cancelled (a failed test must not leave jobs queued)."""
    root = Path(dataset.path)
    (root / "code" / "merge.sh").write_text(MERGE_SH)
    (root / "code" / "merge.sh").chmod(0o755)
    dataset.save(message="merge script", result_renderer="disabled")
    yield dataset
    left = [j.job_id for j in DatasetHandle(dataset).store.jobs()
            if j.job_id]
    if left:
        subprocess.run(["scancel"] + left)


def test_three_stage_pipeline_in_one_go(slurm, pipe):
    """2 producers -> 1 consumer -> 1 evaluator, scheduled without waiting
    (the consumer's input directory does not exist yet), finished in one
    call: commits in dependency order, each record names its producers'
    commits."""
    ds = pipe
    base = git(ds, "rev-parse", "HEAD").strip()
    p1 = jid(schedule(ds, ["sbatch", "--hold", "--wrap",
                           "mkdir -p sim; cat data/in.txt > sim/a.txt"],
                      inputs=["data/in.txt"], outputs=["sim/a.txt"]))
    p2 = jid(schedule(ds, ["sbatch", "--hold", "--wrap",
                           "mkdir -p sim; echo b > sim/b.txt"],
                      outputs=["sim/b.txt"]))
    # (its directory exists: prepared for the producers' outputs)
    assert not list(Path(ds.path, "sim").iterdir())
    c = submitted(schedule(ds, "sbatch code/merge.sh {outputs} {inputs}",
                           inputs=["sim"], outputs=["model.txt"]))
    e = submitted(schedule(ds, "sbatch code/merge.sh {outputs} {inputs}",
                           inputs=["model.txt"], outputs=["eval/score.txt"]))
    assert [d["slurm_job_id"] for d in c["depends_on"]] == [p1, p2]
    assert c["depends_on"][0]["inputs"] == ["sim"]
    assert c["dependency"] == "afterok:%s:%s" % (p1, p2)
    assert [d["slurm_job_id"] for d in e["depends_on"]] == [c["slurm_job_id"]]
    # Slurm holds them back, the job store knows why
    assert scontrol_dependency(c["slurm_job_id"]).startswith(
        "afterok:%s(unfulfilled),afterok:%s(unfulfilled)" % (p1, p2)) or \
        scontrol_dependency(c["slurm_job_id"]) == \
        "afterok:%s(unfulfilled):%s(unfulfilled)" % (p1, p2)
    spec = DatasetHandle(ds).store.find(c["slurm_job_id"])[-1].spec
    assert [d["slurm_job_id"] for d in spec["depends_on"]] == [p1, p2]
    listed = finish(ds, list_open_jobs=True)
    assert one(listed, slurm_job_id=e["slurm_job_id"])["depends_on"] == [
        c["slurm_job_id"]]
    release(p1, p2)
    ids = [p1, p2, c["slurm_job_id"], e["slurm_job_id"]]
    wait_jobs(ids)
    res = finish(ds)
    assert sorted(r["slurm_job_id"] for r in res if r["status"] == "ok") == \
        sorted(ids)
    recs = records(ds, base)
    order = [str(r["slurm_job_id"]) for _, r in recs]
    assert set(order[:2]) == {p1, p2} and order[2:] == ids[2:]
    jobs = by_job(recs)
    deps = jobs[c["slurm_job_id"]][1]["depends_on"]
    assert [(d["slurm_job_id"], d["commit"]) for d in deps] == [
        (int(p1), jobs[p1][0]), (int(p2), jobs[p2][0])]
    assert jobs[c["slurm_job_id"]][1]["inputs"] == ["sim"]
    deps = jobs[e["slurm_job_id"]][1]["depends_on"]
    assert [(d["slurm_job_id"], d["commit"]) for d in deps] == [
        (int(c["slurm_job_id"]), jobs[c["slurm_job_id"]][0])]
    assert "depends_on" not in jobs[p1][1]
    # the consumer really read both producers' outputs
    model = Path(ds.path, "model.txt").read_text()
    assert model.startswith("input data\nb\njob %s" % c["slurm_job_id"])
    assert Path(ds.path, "eval/score.txt").read_text().startswith(model)
    assert git(ds, "status", "--porcelain") == ""
    assert store_snapshot(ds)[1] == []


def test_consumer_reads_the_producers_new_content(slurm, pipe):
    """The race of the issue: B must read A's rewritten mid.txt, and its
    record must say so."""
    ds = pipe
    Path(ds.path, "mid.txt").write_text("old\n")
    ds.save(message="mid", result_renderer="disabled")
    base = git(ds, "rev-parse", "HEAD").strip()
    a = jid(schedule(ds, ["sbatch", "--wrap", "sleep 3; echo new > mid.txt"],
                     outputs=["mid.txt"]))
    b = submitted(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                           inputs=["mid.txt"], outputs=["final.txt"]))
    assert b["depends_on"][0]["slurm_job_id"] == a
    finish_producer_consumer(ds, a, b["slurm_job_id"])
    jobs = by_job(records(ds, base))
    assert jobs[b["slurm_job_id"]][1]["depends_on"][0]["commit"] == \
        jobs[a][0]


def test_failed_producer_blocks_consumers_then_closed(slurm, pipe):
    ds = pipe
    a = jid(schedule(ds, ["sbatch", "--wrap", "exit 3"], outputs=["a.txt"]))
    b = jid(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                     inputs=["a.txt"], outputs=["b.txt"]))
    c = jid(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                     inputs=["b.txt"], outputs=["c.txt"]))
    wait_jobs([a])
    wait_reason(b, "DependencyNeverSatisfied")
    head = git(ds, "rev-parse", "HEAD")
    res = finish(ds)
    assert one(res, slurm_job_id=a)["state"] == "FAILED"
    rb, rc = one(res, slurm_job_id=b), one(res, slurm_job_id=c)
    for r, producer in ((rb, a), (rc, b)):
        assert r["status"] == "impossible" and r["state"] == "PENDING"
        assert r["blocked_by"][0]["slurm_job_id"] == producer
        assert "can never run" in text(r) and "--close-failed-jobs" in text(r)
    assert "ended FAILED" in rb["blocked_by"][0]["reason"]
    assert "blocked itself" in rc["blocked_by"][0]["reason"]
    assert git(ds, "rev-parse", "HEAD") == head
    res = finish(ds, close_failed_jobs=True)
    assert all(r["status"] == "ok" for r in res), res
    assert "cancelled and closed" in text(one(res, slurm_job_id=b))
    assert "cancelled and closed" in text(one(res, slurm_job_id=c))
    wait_jobs([b, c])
    acc = subprocess.run(["sacct", "-n", "-X", "-P", "-j", "%s,%s" % (b, c),
                          "-o", "State"], capture_output=True,
                         text=True).stdout.splitlines()
    assert acc and all(s.startswith("CANCELLED") for s in acc), acc
    rows, claims = store_snapshot(ds)
    assert [s for _, s, _ in rows] == ["abandoned"] * 3 and claims == []
    assert git(ds, "rev-parse", "HEAD") == head
    assert one(finish(ds), status="notneeded")


def test_consumer_finished_alone_waits_for_its_producer(slurm, pipe):
    """`slurm-finish B` before A is committed: B stays open; after A was
    committed (another call), B's record names A's commit."""
    ds = pipe
    a = jid(schedule(ds, ["sbatch", "--wrap", "echo a > a.txt"],
                     outputs=["a.txt"]))
    b = jid(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                     inputs=["a.txt"], outputs=["b.txt"]))
    wait_jobs([a, b])
    head = git(ds, "rev-parse", "HEAD")
    r = one(finish(ds, job_id=[b]), slurm_job_id=b)
    assert r["status"] == "impossible" and r["waiting_for"] == [a]
    assert "producer job %s is not committed yet" % a in text(r)
    assert git(ds, "rev-parse", "HEAD") == head
    one(finish(ds, job_id=[a]), slurm_job_id=a, status="ok")
    a_commit = git(ds, "rev-parse", "HEAD").strip()
    one(finish(ds, job_id=[b]), slurm_job_id=b, status="ok")
    _, rec = parse_message(git(ds, "log", "-1", "--format=%B"))
    assert rec["depends_on"][0]["commit"] == a_commit


def test_producer_unknown_to_slurm_blocks_its_consumer(slurm, pipe):
    """Slurm treats afterok on a job it does not know as satisfied: the
    consumer runs on an output nobody made. It is never committed; once
    the producer counts as unknown it is reported and can be closed."""
    ds = pipe
    store = DatasetHandle(ds).store
    row = store.claim(["ghost.txt"], {"cmd": "sbatch x", "outputs":
                                      ["ghost.txt"], "output_specs":
                                      ["ghost.txt"], "pwd": "."}, None)
    here = cluster_name(DatasetHandle(ds))   # the suite's cluster
    store.set_submitted(row, here, "987654")
    b = submitted(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                           inputs=["ghost.txt"], outputs=["b.txt"]))
    assert b["dependency"] == "afterok:987654"
    wait_jobs([b["slurm_job_id"]])
    head = git(ds, "rev-parse", "HEAD")
    # a fresh producer may just not be visible yet: the consumer waits
    r = one(finish(ds), slurm_job_id=b["slurm_job_id"])
    assert r["status"] == "impossible" and r["waiting_for"] == ["987654"]
    store.con.execute("UPDATE jobs SET submit_time = 1 WHERE row = ?",
                      (row,))
    r = one(finish(ds), slurm_job_id=b["slurm_job_id"])
    assert r["status"] == "impossible" and r["state"] == "COMPLETED"
    assert r["blocked_by"] == [{"slurm_job_id": "987654",
                                "cluster": here,
                                "reason": "is unknown to Slurm"}]
    assert "ran, but is not committed" in text(r)
    res = finish(ds, close_failed_jobs=True)
    assert all(x["status"] == "ok" for x in res), res
    assert text(one(res, slurm_job_id=b["slurm_job_id"])).startswith(
        "closed job %s: blocked" % b["slurm_job_id"])
    assert git(ds, "rev-parse", "HEAD") == head
    assert store_snapshot(ds)[1] == []


def test_users_own_dependency_is_kept(slurm, pipe):
    ds = pipe
    x = subprocess.run(["sbatch", "--parsable", "--hold", "--wrap", "true"],
                       capture_output=True, text=True,
                       check=True).stdout.strip()
    script = Path(ds.path, "code", "dep.sh")
    script.write_text("#!/bin/sh\n#SBATCH --job-name=dep # comment\n"
                      "#SBATCH --dependency=afterany:%s\n\n"
                      "cat \"$2\" > \"$1\"\n" % x)
    ds.save(message="dep script", result_renderer="disabled")
    ours = []
    try:
        p = jid(schedule(ds, "sbatch --hold code/job.sh p.txt",
                         outputs=["p.txt"]))
        ours.append(p)
        # on the command line
        b = submitted(schedule(
            ds, "sbatch -d afterany:%s code/job.sh {outputs} {inputs}" % x,
            inputs=["p.txt"], outputs=["b.txt"]))
        ours.append(b["slurm_job_id"])
        assert b["dependency"] == "afterany:%s,afterok:%s" % (x, p)
        assert scontrol_dependency(b["slurm_job_id"]) == (
            "afterany:%s(unfulfilled),afterok:%s(unfulfilled)" % (x, p))
        # in the script's #SBATCH lines (the command line would replace it)
        c = submitted(schedule(ds, "sbatch code/dep.sh {outputs} {inputs}",
                               inputs=["p.txt"], outputs=["c.txt"]))
        ours.append(c["slurm_job_id"])
        assert c["dependency"] == "afterany:%s,afterok:%s" % (x, p)
        assert scontrol_dependency(c["slurm_job_id"]) == (
            "afterany:%s(unfulfilled),afterok:%s(unfulfilled)" % (x, p))
        rec = DatasetHandle(ds).store.find(c["slurm_job_id"])[-1].spec
        assert rec["cmd"] == "sbatch code/dep.sh {outputs} {inputs}"
        # an any-of dependency cannot be combined: refused, nothing sent
        before = store_snapshot(ds)
        r = one(schedule(ds, "sbatch -d afterany:%s?afterok:%s code/job.sh "
                         "d.txt p.txt" % (x, p), inputs=["p.txt"],
                         outputs=["d.txt"]), action="slurm-schedule")
        assert r["status"] == "impossible"
        assert "'?'" in r["message"] and "command line" in r["message"]
        assert store_snapshot(ds) == before
    finally:
        subprocess.run(["scancel", x] + ours)


def test_array_producer(slurm, pipe):
    ds = pipe
    Path(ds.path, "code", "array.sh").write_text(
        "#!/bin/sh\nmkdir -p arr\nsleep 1\n"
        "echo task $SLURM_ARRAY_TASK_ID > arr/t$SLURM_ARRAY_TASK_ID.txt\n")
    ds.save(message="array script", result_renderer="disabled")
    a = jid(schedule(ds, "sbatch --array=1-3 code/array.sh",
                     outputs=["arr"]))
    b = submitted(schedule(ds, "sbatch code/merge.sh {outputs} {inputs}",
                           inputs=["arr"], outputs=["sum.txt"]))
    assert b["dependency"] == "afterok:%s" % a
    wait_jobs([a, b["slurm_job_id"]])
    # the consumer waited for the whole array
    assert Path(ds.path, "sum.txt").read_text() == (
        "task 1\ntask 2\ntask 3\njob %s\n" % b["slurm_job_id"])
    base = git(ds, "rev-parse", "HEAD").strip()
    finish_until(ds, [a, b["slurm_job_id"]])
    recs = records(ds, base)
    assert [str(r["slurm_job_id"]) for _, r in recs] == [a, b["slurm_job_id"]]
    assert recs[1][1]["depends_on"][0]["commit"] == recs[0][0]


def test_alt_dir_pipeline_shares_the_staging_dir(slurm, pipe, tmp_path):
    ds = pipe
    alt = tmp_path / "stage"
    Path(ds.path, "mid.txt").write_text("old\n")
    ds.save(message="mid", result_renderer="disabled")
    a = jid(schedule(ds, ["sbatch", "--hold", "--wrap",
                          "echo new > mid.txt"], outputs=["mid.txt"],
                     alt_dir=str(alt)))
    b = submitted(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                           inputs=["mid.txt"], outputs=["final.txt"],
                           alt_dir=str(alt)))
    # B did not stage the old mid.txt over what A will write
    assert not (alt / "mid.txt").exists()
    assert b["depends_on"][0]["slurm_job_id"] == a
    before = store_snapshot(ds)
    for kw, where in ((dict(), "in the dataset"),
                      (dict(alt_dir=str(tmp_path / "other")),
                       "in the alt-dir %s" % (tmp_path / "other"))):
        r = one(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                         inputs=["mid.txt"], outputs=["other.txt"], **kw),
                action="slurm-schedule")
        assert r["status"] == "impossible", r
        assert "same staging directory" in r["message"]
        assert "this job would run %s" % where in r["message"]
        assert "schedule it with --alt-dir %s" % alt in r["message"]
    assert store_snapshot(ds) == before
    assert not (tmp_path / "other").exists()
    release(a)
    finish_producer_consumer(ds, a, b["slurm_job_id"])
    assert Path(ds.path, "mid.txt").read_text() == "new\n"
    assert not (alt / "mid.txt").exists()


def test_refuse_mode_bad_config_and_non_sbatch(slurm, pipe):
    ds = pipe
    p = jid(schedule(ds, "sbatch --hold code/job.sh p.txt",
                     outputs=["p.txt"]))
    try:
        before = store_snapshot(ds)
        cases = [
            ("refuse", "sbatch code/job.sh {outputs} {inputs}",
             ["is written by job %s" % p, "dependencies=refuse"]),
            ("bogus", "sbatch code/job.sh {outputs} {inputs}",
             ["must be auto or refuse"]),
            ("auto", "/usr/bin/env sbatch code/job.sh {outputs} {inputs}",
             ["only be added to an sbatch call"]),
        ]
        for mode, cmd, words in cases:
            ds.config.set("datalad.hpcdata.dependencies", mode,
                          scope="local")
            r = one(schedule(ds, cmd, inputs=["p.txt"], outputs=["q.txt"]),
                    action="slurm-schedule")
            assert r["status"] == "impossible", (mode, r)
            for w in words:
                assert w in r["message"], (mode, r["message"])
            assert store_snapshot(ds) == before
    finally:
        subprocess.run(["scancel", p])


def test_no_cycle_by_construction(slurm, pipe):
    """A reads what B will write and B what A writes: only the job planned
    second depends on the first (its claims exist, the other's did not)."""
    ds = pipe
    Path(ds.path, "b.txt").write_text("b0\n")
    ds.save(message="b", result_renderer="disabled")
    a = submitted(schedule(ds, "sbatch --hold code/job.sh a.txt b.txt",
                           inputs=["b.txt"], outputs=["a.txt"]))
    b = submitted(schedule(ds, "sbatch --hold code/job.sh b.txt a.txt",
                           inputs=["a.txt"], outputs=["b.txt"]))
    subprocess.run(["scancel", a["slurm_job_id"], b["slurm_job_id"]])
    assert "depends_on" not in a
    assert [d["slurm_job_id"] for d in b["depends_on"]] == [
        a["slurm_job_id"]]


def _chain_history(ds):
    """Six finished jobs in two independent chains, interleaved."""
    base = git(ds, "rev-parse", "HEAD").strip()
    ids = {}
    for step in (1, 2, 3):
        for chain in ("x", "y"):
            src = "data/%s.txt" % chain if step == 1 else \
                "%s/%d.txt" % (chain, step - 1)
            ids[chain + str(step)] = jid(schedule(
                ds, "sbatch code/job.sh {outputs} {inputs}", inputs=[src],
                outputs=["%s/%d.txt" % (chain, step)]))
    wait_jobs(ids.values())
    res = finish(ds)
    assert len([r for r in res if r.get("commit")]) == 6
    recs = by_job(records(ds, base))
    return {k: recs[v][0] for k, v in ids.items()}


def test_affected_by_resubmits_one_chain_in_order(slurm, pipe):
    ds = pipe
    for c in "xy":
        Path(ds.path, "data", c + ".txt").write_text(c + "\n")
    ds.save(message="chain inputs", result_renderer="disabled")
    shas = _chain_history(ds)
    # the plan: only chain x, each waiting for the previous resubmission
    res = dl.slurm_reschedule(dataset=ds, report=True,
                              affected_by=["data/x.txt"], **KW)
    assert [r["commit"] for r in res] == [shas["x1"], shas["x2"],
                                          shas["x3"]]
    assert res[0]["depends_on"] == []
    assert res[1]["depends_on"][0]["planned"] == shas["x1"]
    assert res[2]["depends_on"][0]["planned"] == shas["x2"]
    assert "waits for: the resubmission of %s" % shas["x1"][:10] in \
        text(res[1])
    # a commit that changed data/x.txt: the same chain
    Path(ds.path, "data", "x.txt").unlink()      # annexed: a symlink
    Path(ds.path, "data", "x.txt").write_text("x fixed\n")
    ds.save(message="fix x", result_renderer="disabled")
    res = dl.slurm_reschedule(dataset=ds, report=True,
                              affected_by_commit="HEAD", **KW)
    assert [r["commit"] for r in res] == [shas["x1"], shas["x2"],
                                          shas["x3"]]
    # for real
    base = git(ds, "rev-parse", "HEAD").strip()
    res = dl.slurm_reschedule(dataset=ds, affected_by=["data/x.txt"], **KW)
    new = [r["slurm_job_id"] for r in res if r["status"] == "ok"]
    assert len(new) == 3 and [r["commit"] for r in res] == [
        shas["x1"], shas["x2"], shas["x3"]]
    assert res[1]["depends_on"][0]["slurm_job_id"] == new[0]
    assert res[2]["depends_on"][0]["slurm_job_id"] == new[1]
    wait_jobs(new)
    res = finish(ds)
    recs = records(ds, base)
    assert [str(r["slurm_job_id"]) for _, r in recs] == new
    assert [r["chain"][-1] for _, r in recs] == [shas["x1"], shas["x2"],
                                                 shas["x3"]]
    assert Path(ds.path, "x", "3.txt").read_text().startswith("x fixed\n")
    assert Path(ds.path, "y", "3.txt").read_text().startswith("y\n")


def test_since_resubmits_with_dependencies(slurm, pipe):
    ds = pipe
    base = git(ds, "rev-parse", "HEAD").strip()
    a = jid(schedule(ds, ["sbatch", "--wrap", "echo one > one.txt"],
                     outputs=["one.txt"]))
    b = jid(schedule(ds, "sbatch code/job.sh {outputs} {inputs}",
                     inputs=["one.txt"], outputs=["two.txt"]))
    wait_jobs([a, b])
    finish(ds)
    first = records(ds, base)
    mid = git(ds, "rev-parse", "HEAD").strip()
    res = dl.slurm_reschedule(dataset=ds, since=base, **KW)
    a2, b2 = [r["slurm_job_id"] for r in res]
    assert "depends_on" not in res[0]
    assert res[1]["depends_on"][0]["slurm_job_id"] == a2
    assert res[1]["dependency"] == "afterok:%s" % a2
    wait_jobs([a2, b2])
    finish(ds)
    recs = records(ds, mid)
    assert [str(r["slurm_job_id"]) for _, r in recs] == [a2, b2]
    assert recs[1][1]["depends_on"][0]["commit"] == recs[0][0]
    assert recs[1][1]["chain"] == [first[1][0]]


def _record_commit(ds, job, inputs, outputs, chain=()):
    """A commit carrying one of our records (no Slurm involved)."""
    record = {"cmd": "sbatch code/job.sh {outputs} {inputs}", "dsid": ds.id,
              "exit": 0, "inputs": inputs, "extra_inputs": [],
              "outputs": outputs, "pwd": ".", "chain": list(chain),
              "slurm_job_id": job, "slurm_outputs": [],
              "slurm_state": "COMPLETED", "extension": "datalad-hpcdata"}
    git(ds, "commit", "--allow-empty", "-q", "-m",
        "[DATALAD SLURM RUN] Slurm job %d: Completed\n\n"
        "=== Do not change lines below ===\n%s\n"
        "^^^ Do not change lines above ^^^\n" % (job, json.dumps(record)))
    return git(ds, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("case", [
    "unknown-path", "outside", "no-records-since", "unused-path",
    "unknown-commit", "empty-commit"])
def test_affected_by_bad_input(slurm, pipe, case, tmp_path):
    ds = pipe
    Path(ds.path, "data", "unused.txt").write_text("u\n")
    ds.save(message="unused", result_renderer="disabled")
    base = git(ds, "rev-parse", "HEAD").strip()
    _record_commit(ds, 11, ["data/in.txt"], ["r/1.txt"])
    _record_commit(ds, 12, ["r/1.txt"], ["r/2.txt"])
    kw, words = {
        "unknown-path": (dict(affected_by=["nope/x.txt"]),
                         "unknown path 'nope/x.txt'"),
        "outside": (dict(affected_by=[str(tmp_path)]), "outside the dataset"),
        "no-records-since": (dict(since="HEAD", affected_by=["data/in.txt"]),
                             "no [DATALAD SLURM RUN] records in HEAD..HEAD"),
        "unused-path": (dict(affected_by=["data/unused.txt"]),
                        "no recorded job in the history up to HEAD used "
                        "'data/unused.txt'"),
        "unknown-commit": (dict(affected_by_commit="nosuchrev"),
                           "unknown revision 'nosuchrev'"),
        "empty-commit": (dict(affected_by_commit=base),
                         "no recorded job"),
    }[case]
    before = store_snapshot(ds), git(ds, "rev-parse", "HEAD")
    res = dl.slurm_reschedule(dataset=ds, **dict(KW, **kw))
    r = one(res, action="slurm-reschedule")
    assert r["status"] == "impossible" and words in r["message"], r
    assert (store_snapshot(ds), git(ds, "rev-parse", "HEAD")) == before
    # also without --affected-by: a range without records says so
    if case == "no-records-since":
        r = one(dl.slurm_reschedule(dataset=ds, since="HEAD", **KW),
                action="slurm-reschedule")
        assert r["status"] == "impossible" and "no [DATALAD" in r["message"]


def test_affected_by_superseded_and_reordered(slurm, pipe):
    """Only the newest re-run of a job is resubmitted, and before the jobs
    that read its output even where history has it after them."""
    ds = pipe
    s1 = _record_commit(ds, 21, ["data/in.txt"], ["sims/a"])
    t1 = _record_commit(ds, 22, ["sims/a/x.txt"], ["model"])
    s2 = _record_commit(ds, 23, ["data/in.txt"], ["sims/a"], chain=[s1])
    res = dl.slurm_reschedule(dataset=ds, report=True,
                              affected_by=["data/in.txt"], **KW)
    assert [r["commit"] for r in res] == [s2, t1]
    assert res[1]["depends_on"][0]["planned"] == s2

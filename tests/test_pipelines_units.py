"""The pieces of the pipeline feature that need no cluster: sbatch argv and
#SBATCH parsing, dependency merging, path overlaps, the affected-by walk
and its ordering."""

from __future__ import annotations

import pytest

from datalad_hpcdata.jobs.affected import (
    PathIndex,
    affected,
    data_flow_order,
    supersede,
)
from datalad_hpcdata.jobs.dataflow import outside_claims, spec_overlaps
from datalad_hpcdata.jobs.history import recorded, sbatch_script
from datalad_hpcdata.slurm.argv import (
    merge_dependency,
    parse_options,
    script_index,
    script_options,
    user_dependency,
    with_dependency,
)


@pytest.mark.parametrize("argv, idx", [
    ("sbatch job.sh a b", 1),
    ("sbatch -p debug job.sh a", 3),
    ("sbatch -pdebug job.sh", 2),
    ("sbatch --partition debug job.sh", 3),
    ("sbatch --partition=debug job.sh", 2),
    ("sbatch -Hp debug job.sh", 3),          # a flag cluster with a value
    ("sbatch --hold --nice job.sh", 3),      # optional arguments: no value
    ("sbatch -d afterok:1 -J x job.sh", 5),
    ("sbatch -- job.sh -p", 2),
    ("sbatch --wrap 'echo hi'", None),
    ("sbatch -p debug", None),               # script from stdin
    ("sbatch -n1 : -n2 job.sh", 4),          # heterogeneous components
    ("sbatch -n1 : --wrap x", None),
])
def test_script_index(argv, idx):
    import shlex
    assert script_index(shlex.split(argv)) == idx


def test_parse_options_values():
    opts, end = parse_options(["-Hd", "afterok:1", "--kill-on-invalid-dep",
                               "yes", "--export=ALL", "s.sh"])
    assert opts == [("-H", ""), ("-d", "afterok:1"),
                    ("--kill-on-invalid-dep", "yes"), ("--export", "ALL")]
    assert end == 5


def test_script_options_like_sbatch():
    text = ("#!/bin/sh\n\n# comment\n  # indented comment\n"
            "#SBATCH --dependency=afterany:5 # trailing comment\n"
            '#SBATCH -J "my job" -d afterok:6\n'
            " #SBATCH -d afterok:7\n"            # not at column 0: ignored
            "echo run\n"
            "#SBATCH -d afterok:8\n")            # after a command: ignored
    assert script_options(text) == [("--dependency", "afterany:5"),
                                    ("-J", "my job"), ("-d", "afterok:6")]
    het = "#!/bin/sh\n#SBATCH -d afterok:1\n#SBATCH hetjob\n#SBATCH -d x\n"
    assert script_options(het) == [("-d", "afterok:1")]


def test_user_dependency_command_line_wins(tmp_path):
    (tmp_path / "job.sh").write_text("#!/bin/sh\n#SBATCH -d afterany:3\n")
    assert user_dependency(["sbatch", "job.sh"], str(tmp_path)) == (
        "afterany:3", "#SBATCH line")
    assert user_dependency(["sbatch", "-d", "singleton", "--dependency",
                            "afterok:4", "job.sh"], str(tmp_path)) == (
        "afterok:4", "command line")
    assert user_dependency(["sbatch", "missing.sh"], str(tmp_path)) == (
        None, "")


def test_merge_and_insert_dependency():
    assert merge_dependency(None, ["7", "9"]) == "afterok:7:9"
    assert merge_dependency("singleton", ["7"]) == "singleton,afterok:7"
    with pytest.raises(ValueError, match="any-of"):
        merge_dependency("afterok:1?afterany:2", ["7"])
    assert with_dependency(["sbatch", "-d", "x", "job.sh", "-d", "y"],
                           "x,afterok:7") == [
        "sbatch", "-d", "x", "--dependency=x,afterok:7", "job.sh", "-d", "y"]
    assert with_dependency(["sbatch", "--", "job.sh"], "afterok:7") == [
        "sbatch", "--dependency=afterok:7", "--", "job.sh"]
    assert with_dependency(["sbatch", "--wrap", "true"], "afterok:7") == [
        "sbatch", "--wrap", "true", "--dependency=afterok:7"]


@pytest.mark.parametrize("spec, path, hit", [
    ("sims", "sims/a", True),
    ("sims/a/x.txt", "sims/a", True),
    ("sims/a", "sims", True),
    ("sims/ab", "sims/a", False),
    ("sims/*/x.txt", "sims/a", True),
    ("sims/*/x.txt", "other/a", False),
    ("sims/a*.txt", "sims/b.txt", False),
    ("sims/a*.txt", "sims/a1.txt", True),
    ("*.txt", "out.txt", True),
    ("**/x.txt", "deep/down/x.txt", True),
])
def test_spec_overlaps(spec, path, hit):
    assert spec_overlaps(spec, path) is hit


def test_path_index():
    idx = PathIndex()
    for p, v in (("a/b", 1), ("a/c/d", 2), ("x", 3), ("g/*.txt", 4)):
        idx.add(p, v)
    assert sorted(idx.overlapping("a")) == [1, 2]
    assert idx.overlapping("a/b/c") == [1]
    assert idx.overlapping("a/bb") == []
    assert idx.overlapping("g/z.txt") == [4]
    assert idx.overlapping("g/z.dat") == []
    assert sorted(idx.overlapping("*")) == [1, 2, 3, 4]


def test_outside_claims(tmp_path):
    for p in ("d/own.txt", "d/prod/x.txt", "e.txt"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text("x")
    assert outside_claims(str(tmp_path), ["d", "e.txt"], ["d/prod"]) == [
        "d/own.txt", "e.txt"]
    assert outside_claims(str(tmp_path), ["d/prod/x.txt"], ["d/prod"]) == []


def _rec(i, inputs, outputs, chain=(), cmd="sbatch code/run.sh"):
    rec = {"cmd": cmd, "inputs": inputs, "outputs": outputs, "pwd": ".",
           "chain": list(chain), "slurm_job_id": i,
           "extension": "datalad-hpcdata", "slurm_state": "COMPLETED"}
    return recorded("%040d" % i, "Slurm job %d: Completed" % i, rec, index=i)


def test_affected_walk_supersede_and_order():
    s1 = _rec(1, ["data/in.txt"], ["sims/a"])
    t1 = _rec(2, ["sims/a/x.txt"], ["model"])
    s2 = _rec(3, ["data/in.txt"], ["sims/a"], chain=[s1.sha])
    other = _rec(4, ["data/other.txt"], ["o"])
    hit = affected([s1, t1, s2, other], ["data/in.txt"])
    assert hit == [s1, t1, s2]
    assert [r.sha for r in data_flow_order(supersede(hit))] == [s2.sha,
                                                               t1.sha]
    # the script counts as read; a job is only affected by earlier records
    late = _rec(5, [], ["data/in.txt"])
    assert affected([t1, late], ["code/run.sh"]) == [t1, late]
    assert affected([t1, late], ["sims"]) == [t1]


def test_order_breaks_a_cycle_in_history_order():
    a = _rec(1, ["b.txt"], ["a.txt"])
    b = _rec(2, ["a.txt"], ["b.txt"])
    assert data_flow_order([b, a]) == [a, b]


def test_sbatch_script_of_a_record():
    assert sbatch_script("sbatch -p x ../code/job.sh {outputs}", "sub") == \
        "code/job.sh"
    assert sbatch_script("sbatch --wrap 'x'", ".") is None
    assert sbatch_script("sbatch {inputs}", ".") is None
    assert sbatch_script("python x.py", ".") is None
    assert sbatch_script("sbatch ../../outside.sh", "sub") is None


def _array_rec(i, outputs, tasks, inputs=("params",), **keys):
    rec = {"cmd": "sbatch --array=%s code/sim.sh" % tasks, "pwd": ".",
           "inputs": list(inputs), "outputs": outputs, "chain": [],
           "slurm_job_id": i, "extension": "datalad-hpcdata",
           "slurm_state": "COMPLETED", **keys}
    return recorded("%040d" % i, "Slurm job %d: Completed" % i, rec, index=i)


def test_per_task_outputs_are_matched_per_task():
    """A job reading one task's output of an array with ``%a`` outputs is
    affected by (and ordered after) that array; a path of a task the
    array did not have is not its output."""
    tasks = {str(t): {"state": "COMPLETED"} for t in (1, 2, 3)}
    sims = _array_rec(1, ["sims/run-%a.txt", "sims/%A-%3a.log"], "1-3",
                      array_tasks=tasks)
    assert sims.produced == [
        "sims/run-1.txt", "sims/1-001.log", "sims/run-2.txt",
        "sims/1-002.log", "sims/run-3.txt", "sims/1-003.log"]
    reader = _rec(2, ["sims/run-2.txt"], ["model"])
    log_reader = _rec(3, ["sims/1-003.log"], ["logs-summary"])
    stranger = _rec(4, ["sims/run-7.txt"], ["other"])
    records = [sims, reader, log_reader, stranger]
    assert affected(records, ["params"]) == [sims, reader, log_reader]
    assert data_flow_order([reader, sims]) == [sims, reader]
    # the record of a reschedule of some tasks names only those
    some = _array_rec(5, ["sims/run-%a.txt"], "2", array_override="2")
    assert some.produced == ["sims/run-2.txt"]
    # a record that names no tasks: the pattern stands for any task
    vague = _array_rec(6, ["sims/run-%a.txt"], "1-3")
    assert vague.produced == ["sims/run-*.txt"]
    assert affected([vague, stranger], ["params"]) == [vague, stranger]


def test_graph_connects_a_task_output_to_its_reader():
    from datalad_hpcdata.jobs.graph import Graph, _add_parts, _add_recorded
    tasks = {str(t): {"state": "COMPLETED"} for t in (1, 2)}
    g = Graph()
    _add_recorded(g, _array_rec(1, ["sims/run-%a.txt"], "1-2",
                                array_tasks=tasks))
    _add_recorded(g, _rec(2, ["sims/run-2.txt"], ["model"]))
    _add_recorded(g, _rec(3, ["sims/run-9.txt"], ["other"]))
    _add_parts(g)
    parts = [(e["from"], e["to"]) for e in g.edges if e["type"] == "part"]
    assert parts == [("file:sims/run-%a.txt", "file:sims/run-2.txt")]


def test_only_the_tasks_whose_own_inputs_changed_are_affected():
    tasks = {str(t): {"state": "COMPLETED"} for t in (1, 2, 3)}
    sims = _array_rec(1, ["sims/run-%a.txt"], "1-3%2",
                      inputs=["params/p-%a.txt", "params/common.txt"],
                      array_tasks=tasks, array_spec="1-3%2")
    assert sims.task_reads == {"1": ["params/p-1.txt"],
                               "2": ["params/p-2.txt"],
                               "3": ["params/p-3.txt"]}
    two = _rec(2, ["sims/run-2.txt"], ["model-2"])
    three = _rec(3, ["sims/run-3.txt"], ["model-3"])
    records = [sims, two, three]
    hit = affected(records, ["params/p-2.txt"])
    assert [r.sha for r in hit] == [sims.sha, two.sha]
    assert hit[0].rerun_tasks == [2]
    assert hit[0].produced == ["sims/run-2.txt"]
    assert hit[0].reads == ["params/common.txt", "params/p-2.txt",
                            "code/sim.sh"]
    # what every task reads: the whole array, all its consumers
    hit = affected(records, ["params/common.txt"])
    assert hit == [sims, two, three] and hit[0].rerun_tasks is None
    assert affected(records, ["params/p-7.txt"]) == []
    # all tasks' own inputs changed: the whole array again
    hit = affected(records, ["params"])
    assert hit[0].rerun_tasks is None and len(hit) == 3


def test_a_partial_rerun_does_not_stand_for_the_array():
    tasks = {str(t): {"state": "COMPLETED"} for t in (1, 2, 3)}
    sims = _array_rec(1, ["sims/run-%a.txt"], "1-3", array_tasks=tasks)
    again = _array_rec(2, ["sims/run-%a.txt"], "1-3", array_override="3",
                       chain=[sims.sha],
                       array_tasks={"3": {"state": "COMPLETED"}})
    assert supersede([sims, again]) == [sims]
    # the partial re-run alone (its array not resubmitted): kept
    assert supersede([again]) == [again]
    whole = _array_rec(3, ["sims/run-%a.txt"], "1-3", chain=[sims.sha],
                       array_tasks=tasks)
    assert supersede([sims, whole]) == [whole]


def test_graph_connects_per_task_inputs_to_their_producer():
    from datalad_hpcdata.jobs.graph import Graph, _add_parts, _add_recorded
    g = Graph()
    _add_recorded(g, _rec(1, ["data"], ["params"]))
    _add_recorded(g, _array_rec(2, ["sims/run-%a.txt"], "1-2",
                                inputs=["params/p-%a"],
                                array_tasks={"1": {}, "2": {}}))
    _add_parts(g)
    parts = [(e["from"], e["to"]) for e in g.edges if e["type"] == "part"]
    assert parts == [("file:params", "file:params/p-%a")]

"""tools/bench_compare.py on tiny synthetic results.json files."""

import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import bench_compare  # noqa: E402


def rec(median, lo=None, hi=None):
    return {"median": median, "min": median if lo is None else lo,
            "max": median if hi is None else hi, "n": 3,
            "samples": [median]}


def results(commit, started, load, slow, noisy, fast, mem, only=None,
            nested=1.0):
    R = {"started": started, "duration_s": 12.0,
         "config": {"sizes": [10, 20], "open_jobs": [5], "rounds": 2},
         "machine": {"host": "h", "cpus": 2, "cpu": "c",
                     "datalad_hpcdata_commit": commit},
         "load_start": load, "load_end": load,
         "sizes": {"10": {"files_tracked": 14, "fixture_build_s": 3.0,
                          "api": {"schedule_s": rec(slow, 0.0, 99.0),
                                  "finish_many_batch": 20,
                                  "finish_single_s": rec(noisy),
                                  "first_finish_s": fast},
                          "cli": {"peak_rss_mib": mem}}},
         "list": {"points": {"5": {"api_child": {"wall_s": nested}}}}}
    if only is not None:
        R["sizes"]["10"]["api"][only] = rec(1.0)
    return R


@pytest.fixture
def files(tmp_path):
    spec = {
        # slow: 1.0/1.1 -> 2.0/2.2, ratio 2.1/1.05 = 2.0, ranges apart
        # noisy: 1.0/2.0 -> 1.8/1.9, ratio 1.85/1.5 = 1.233, ranges overlap
        # fast: 1.0/1.02 -> 0.5/0.52, ratio 0.51/1.01, ranges apart
        # mem: 100/100 -> 108/108, ratio 1.08, inside +-10 %
        # nested: 1.0/1.0 -> 1.2/1.2, ratio 1.2, worse
        "b1": ("aaa", "2026-01-01T00:00:00", 1.0, 1.0, 1.0, 1.0, 100,
               "x_s", 1.0),
        "a2": ("bbb", "2026-01-01T00:01:00", 2.0, 2.0, 1.8, 0.50, 108,
               "y_s", 1.2),
        "a3": ("bbb", "2026-01-01T00:02:00", 2.0, 2.2, 1.9, 0.52, 108,
               "y_s", 1.2),
        "b4": ("aaa", "2026-01-01T00:03:00", 1.0, 1.1, 2.0, 1.02, 100,
               "x_s", 1.0),
    }
    paths = {}
    for name, (commit, started, load, *vals) in spec.items():
        d = tmp_path / name
        d.mkdir()
        p = d / "results.json"
        p.write_text(json.dumps(results(commit, started, [load] * 3, *vals)))
        paths[name] = p
    return paths


def test_pairs_figures_ratio_and_verdict(files, tmp_path):
    out = tmp_path / "out"
    assert bench_compare.main(
        ["--before", str(files["b1"]), str(files["b4"]),
         "--after", str(files["a2"]), str(files["a3"]),
         "--out", str(out), "--name", "t", "--no-plot",
         "--note", "a note for the header"]) == 0
    C = json.loads((out / "t.json").read_text())
    rows = {r["figure"]: r for r in C["figures"]}
    # only numeric timing/memory leaves present on both sides; counts,
    # config, machine, load and fixture builds are not figures
    assert set(rows) == {
        "sizes/10/api/schedule_s", "sizes/10/api/finish_single_s",
        "sizes/10/api/first_finish_s", "sizes/10/cli/peak_rss_mib",
        "list/points/5/api_child/wall_s"}
    assert C["only_before"] == ["sizes/10/api/x_s"]
    assert C["only_after"] == ["sizes/10/api/y_s"]

    slow = rows["sizes/10/api/schedule_s"]
    assert slow["before"]["median"] == pytest.approx(1.05)
    assert slow["after"]["median"] == pytest.approx(2.1)
    assert slow["before"]["runs"] == [1.0, 1.1]
    assert slow["ratio"] == pytest.approx(2.0)
    assert slow["verdict"] == "worse"

    noisy = rows["sizes/10/api/finish_single_s"]
    assert noisy["ratio"] == pytest.approx(1.85 / 1.5)
    lo, hi = noisy["noise_band"]
    assert lo == pytest.approx((1.0 - 0.05) / 1.5)
    assert hi == pytest.approx((2.0 + 0.05) / 1.5)
    assert noisy["verdict"] == "within noise"

    fast = rows["sizes/10/api/first_finish_s"]
    assert fast["ratio"] == pytest.approx(0.51 / 1.01)
    assert fast["verdict"] == "better"

    mem = rows["sizes/10/cli/peak_rss_mib"]
    assert mem["unit"] == "MiB"
    assert mem["ratio"] == pytest.approx(1.08)
    assert mem["verdict"] == "within noise"

    assert rows["list/points/5/api_child/wall_s"]["verdict"] == "worse"

    assert C["run_order"] == ["before", "after", "after", "before"]
    md = (out / "t.md").read_text()
    assert "before: commit aaa; after: commit bbb" in md
    assert "| sizes/10/api/schedule_s | 1.05 s | 2.10 s | 2.00 |" in md
    assert "worse |" in md and "better |" in md
    assert "\n* a note for the header\n" in md


def test_verdict_edges():
    v = bench_compare.verdict
    s = bench_compare.side_stats
    # exactly +10 % is within noise, just over it with disjoint runs is not
    assert v(s([1.0]), s([1.1]))[2] == "within noise"
    assert v(s([1.0]), s([1.11]))[2] == "worse"
    assert v(s([1.0]), s([0.89]))[2] == "better"
    assert v(s([1.0]), s([0.89]), tol=0.2)[2] == "within noise"
    assert v(s([0.0]), s([1.0])) == (None, None, "n/a")


def test_plot(files, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p"
    bench_compare.main(["--before", str(files["b1"]),
                        "--after", str(files["a2"]),
                        "--out", str(out), "--name", "p"])
    assert (out / "p.png").stat().st_size > 1000

"""The verdicts of tools/bench_remote_report.py, from made-up medians: each
target can be met and missed, memory is compared per direction, and the
"git-annex's hash off" options really name the remote."""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import bench_remote  # noqa: E402
import bench_remote_report as report  # noqa: E402

MIB = 1 << 20
GIB = 1024 * MIB


def results(**walls):
    """Results with every sample one median; ``walls`` overrides."""
    medians = {}
    base = {"large upload boto3": 10.0, "large upload ours": 11.0,
            "large upload builtin": 12.0, "large download boto3": 5.0,
            "large download ours": 6.0, "large download builtin": 7.0,
            "large download ours noverify": 5.5,
            "large download builtin noverify": 6.5,
            "large git-annex hash": 6.0, "zenodo curl": 2.0,
            "zenodo get ours": 2.2, "zenodo get ours noverify": 2.1,
            "zenodo engine ours": 2.1, "small ours copy -J8": 10.0,
            "small builtin copy -J8": 11.0}
    base.update(walls)
    rss = {"large upload ours": 110 * MIB, "large download ours": 70 * MIB,
           "memory 256 MiB upload ours": 110 * MIB,
           "memory 256 MiB download ours": 70 * MIB}
    for name, wall in base.items():
        medians[name] = {"wall": wall, "cpu": 1.0, "server_cpu": 1.0,
                         "remote_cpu": 0.5, "remote_rss": rss.get(name),
                         "maxrss": 50 * MIB, "n": 1}
    for name, peak in rss.items():
        medians.setdefault(name, {"wall": 1.0, "cpu": 1.0, "n": 1,
                                  "maxrss": 50 * MIB})["remote_rss"] = peak
    return {"config": {"large": GIB, "files": 2000, "file_size": 4096,
                       "reps": 3, "small_reps": 3, "mem_sizes": [256 * MIB],
                       "units": [16], "concurrencies": [4]},
            "medians": medians, "samples": {"x": [{"load": 1.5}]},
            "load_start": [1.0, 2.0, 3.0], "load_end": [4.0, 5.0, 6.0],
            "machine": {"cpus": 2, "cpu": "x", "mem_gib": 1,
                        "platform": "p"}, "versions": {"git-annex": "10"}}


def verdicts(R):
    rows = {}
    for line in report.targets(R)[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[2]
    return rows


def test_targets_met_and_missed():
    got = verdicts(results())
    assert got["1 GiB upload >= 0.8x raw boto3"] == "met"      # 10/11
    assert got["1 GiB upload >= built-in S3"] == "met"         # 11 < 12
    assert got["Zenodo, `git annex get` >= 0.8x curl"] == "met"
    assert got["2,000 small files `copy -J8` >= built-in S3"] == "met"
    got = verdicts(results(**{"large upload ours": 13.0,
                              "large download ours": 7.5,
                              "zenodo get ours": 2.6,
                              "small ours copy -J8": 11.5}))
    assert got["1 GiB upload >= 0.8x raw boto3"] == "**missed**"  # 10/13
    assert got["1 GiB upload >= built-in S3"] == "**missed**"
    assert got["1 GiB download >= built-in S3"] == "**missed**"
    assert got["Zenodo, `git annex get` >= 0.8x curl"] == "**missed**"
    assert got["2,000 small files `copy -J8` >= built-in S3"] == \
        "**missed**"


def test_memory_is_compared_per_direction():
    R = results()
    got = verdicts(R)
    # uploads (110 MiB) and downloads (70 MiB) differ by design: both met
    assert got["remote memory independent of file size (upload)"] == "met"
    assert got["remote memory independent of file size (download)"] == "met"
    R["medians"]["large download ours"]["remote_rss"] = 300 * MIB
    got = verdicts(R)
    assert got["remote memory independent of file size (download)"] == \
        "**missed**"
    assert got["remote memory independent of file size (upload)"] == "met"


def test_report_names_load_and_hash():
    text = report.markdown(results())
    assert ("Machine load (1/5/15 min) at the start 1.00/2.00/3.00, at "
            "the end 4.00/5.00/6.00") in text
    assert "git-annex's own hash of the file" in text


def test_hash_off_options_name_the_remote():
    assert bench_remote.unverified("ours") == [
        "-c", "annex.verify=false", "-c",
        "remote.ours.annex-security-allow-unverified-downloads=ACKTHPPT"]

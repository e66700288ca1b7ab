#!/usr/bin/env python
"""``git-annex-remote-hpcdata`` (this checkout) that records its own peak
memory and CPU time: when it exits, it writes ``"<peak bytes> <cpu
seconds>"`` to ``<dir>/<pid>``.  The peak is ``VmHWM`` of /proc/self/status,
the high-water mark of this program's own memory (``ru_maxrss`` would also
count git-annex's pages of the fork before the exec); the CPU time is user
plus system.

tools/bench_remote_env.py's wrapper calls ``run(dir)``; run as a program
(tests/remote/test_s3_large.py) the directory is
``$HPCDATA_TEST_RSS_DIR``.  Only ``os`` and ``sys`` are imported here, so
the figures are the remote's own.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(rssdir: str) -> None:
    """Run the remote; record its peak memory and CPU time in `rssdir`."""
    from datalad_hpcdata.remote.main import main
    try:
        main()
    finally:
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) * 1024 for line in status
                        if line.startswith("VmHWM:"))
        cpu = sum(os.times()[:2])
        with open(os.path.join(rssdir, str(os.getpid())), "w") as handle:
            handle.write("%d %.3f" % (peak, cpu))


def read(path) -> tuple[int, float]:
    """(peak bytes, CPU seconds) as ``run`` recorded them in `path`."""
    with open(path) as handle:
        peak, cpu = (handle.read() or "0 0").split()
    return int(peak), float(cpu)


if __name__ == "__main__":
    run(os.environ["HPCDATA_TEST_RSS_DIR"])

"""``git-annex-remote-hpcdata`` that records its own peak memory (tests only).

Runs the real remote; when it exits, writes its peak resident set size in
bytes to ``$HPCDATA_TEST_RSS_DIR/<pid>``: ``VmHWM`` of /proc/self/status,
the high-water mark of this program's own memory (``ru_maxrss`` would also
count git-annex's pages of the fork before the exec).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datalad_hpcdata.remote.main import main  # noqa: E402


def run():
    try:
        main()
    finally:
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) * 1024 for line in status
                        if line.startswith("VmHWM:"))
        path = os.path.join(os.environ["HPCDATA_TEST_RSS_DIR"], str(os.getpid()))
        with open(path, "w") as handle:
            handle.write(str(peak))


if __name__ == "__main__":
    run()

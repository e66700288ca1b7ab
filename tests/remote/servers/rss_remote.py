"""``git-annex-remote-hpcdata`` that records its own peak memory (tests only).

Runs the real remote; when it exits, writes its peak resident set size in
bytes (``getrusage`` ``ru_maxrss``) to ``$HPCDATA_TEST_RSS_DIR/<pid>``.
"""

import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datalad_hpcdata.remote.main import main  # noqa: E402


def run():
    try:
        main()
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        path = os.path.join(os.environ["HPCDATA_TEST_RSS_DIR"], str(os.getpid()))
        with open(path, "w") as handle:
            handle.write(str(peak))


if __name__ == "__main__":
    run()

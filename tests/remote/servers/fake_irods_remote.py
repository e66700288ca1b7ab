"""``git-annex-remote-hpcdata`` with the fake iRODS session (tests only).

The iRODS tests put a ``git-annex-remote-hpcdata`` that runs this file first
on git-annex's PATH: it replaces ``Irods._connect`` (which would open a
python-irodsclient session) with a ``FakeSession`` rooted at
``$HPCDATA_FAKE_IRODS_ROOT``, then runs the real remote.  The production
code has no hook for this.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datalad_hpcdata.remote.main import main  # noqa: E402
from datalad_hpcdata.remote.stores import irods  # noqa: E402
from servers.fake_irods import FakeSession  # noqa: E402


def _connect(self):
    return FakeSession(os.environ["HPCDATA_FAKE_IRODS_ROOT"], password=self.password)


irods.Irods._connect = _connect

if __name__ == "__main__":
    main()

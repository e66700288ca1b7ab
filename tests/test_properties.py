"""Property-based tests (hypothesis) for path canonicalisation and claims.

* Any spelling of a path (``./``, ``//``, ``x/..``, trailing ``/``,
  absolute, relative to a subdirectory, through a symlinked directory),
  with unicode, spaces and glob characters in its names, and in a dataset
  whose own path has ``[ ] * ?`` and spaces, gives the claim of the
  canonical spelling.
* Two jobs' claims (in the real SQLite job store) conflict exactly when a
  path of one equals or is a path-prefix of a path of the other.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datalad_hpcdata.dataset.jobstore import ConflictError, JobStore
from datalad_hpcdata.dataset.paths import (
    PathError,
    canonical_spec,
    claim_path,
    has_glob,
    overlaps,
)

NAME_CHARS = "abcxyzäöΔЙあ _-+=,[]*?1"
names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=6).filter(
    lambda n: n.strip() == n and n not in (".", "..", ".git")
    and not n.startswith("."))
paths = st.lists(names, min_size=1, max_size=4)
ROOT_NAMES = st.sampled_from(["ds", "my [data] set", "a*b?c", "x [1]*",
                              "with space", "ü?[]"])

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _layout(root, parts):
    """Create the literal leading directories, a subdirectory to spell
    paths from and a symlink to the root (the spellings need them)."""
    literal = []
    for p in parts[:-1]:
        if has_glob(p):
            break
        literal.append(p)
    if literal:
        os.makedirs(os.path.join(root, *literal), exist_ok=True)
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    os.symlink(".", os.path.join(root, "link"))
    return literal


def _spellings(root, parts, data):
    literal = len(_layout(root, parts))
    canon = "/".join(parts)
    out = [("root", canon, root), ("dot", "./" + canon, root),
           ("abs", os.path.join(root, canon), root),
           ("sub", "../" + canon, os.path.join(root, "sub")),
           ("link", "link/" + canon, root),
           ("double", "//".join(parts) if len(parts) > 1 else canon, root)]
    if not has_glob(canon):
        out.append(("slash", canon + "/", root))
    # x/.. only where no wildcard came yet (after one it is refused)
    at = data.draw(st.integers(0, literal), label="dotdot position")
    pre = parts[:at] + ["zz", ".."] + parts[at:]
    out.append(("dotdot", "/".join(pre), root))
    if literal and data.draw(st.booleans(), label="via dir symlink"):
        os.symlink(parts[0], os.path.join(root, "ln0"))
        out.append(("dirlink", "/".join(["ln0"] + parts[1:]), root))
    return canon, out


@SETTINGS
@given(parts=paths, root_name=ROOT_NAMES, data=st.data())
def test_every_spelling_gives_the_canonical_claim(parts, root_name, data):
    base = tempfile.mkdtemp()
    try:
        root = os.path.realpath(os.path.join(base, root_name))
        os.makedirs(root)
        canon, spellings = _spellings(root, parts, data)
        want = canonical_spec(canon, root, root)
        assert want == canon
        for how, spelling, pwd in spellings:
            got = canonical_spec(spelling, root, pwd)
            assert got == want, (how, spelling)
            assert _claim(got) == _claim(want)
    finally:
        shutil.rmtree(base)


def _claim(spec: str) -> str:
    """The claim, or the refusal (a glob with no literal directory)."""
    try:
        return claim_path(spec)
    except PathError as e:
        return "refused: %s" % e


def _prefix(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


claim_names = st.sampled_from(["a", "ab", "a b", "a-", "a0", "ä", "b",
                               "a[1]", "*"])
claims = st.lists(st.lists(claim_names, min_size=1, max_size=3)
                  .map("/".join), min_size=1, max_size=3, unique=True)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@SETTINGS
@given(first=claims, second=claims)
def test_claims_conflict_exactly_on_path_prefixes(store_dir, first, second):
    gitdir = tempfile.mkdtemp(dir=str(store_dir))
    store = JobStore(gitdir)
    try:
        row = store.claim(first, {"cmd": "x"}, None)
        expected = sorted({(b, a) for a in first for b in second
                           if _prefix(a, b)})
        assert all(overlaps(b, a) for b, a in expected)
        try:
            store.claim(second, {"cmd": "y"}, None)
            found = []
        except ConflictError as e:
            found = sorted({(new, old) for new, old, job in e.conflicts})
            assert all(job.row == row for _, _, job in e.conflicts)
        assert found == expected
    finally:
        store.close()
        shutil.rmtree(gitdir)


@SETTINGS
@given(a=claims, b=claims)
def test_overlaps_is_symmetric_prefix_relation(a, b):
    for x in a:
        for y in b:
            assert overlaps(x, y) == overlaps(y, x) == _prefix(x, y)

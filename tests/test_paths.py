import os

import pytest

from datalad_hpcdata.dataset.paths import (
    PathError,
    canonical,
    canonical_spec,
    claim_path,
    overlaps,
)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ds"
    (root / "a" / "b").mkdir(parents=True)
    (root / "sub").mkdir()
    os.symlink("a", root / "link")            # symlinked directory
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")
    return os.path.realpath(root)


@pytest.mark.parametrize("spelling,pwd", [
    ("a/x", ""), ("./a/x", ""), ("a/./x", ""), ("a/b/../x", ""),
    ("a/x/", ""), ("link/x", ""), ("x", "a"), ("../a/x", "sub"),
    ("{root}/a/x", "sub"), ("{root}/link/x", ""),
])
def test_spellings_are_one_path(tree, spelling, pwd):
    path = spelling.format(root=tree)
    assert canonical(path, tree, os.path.join(tree, pwd)) == "a/x"


@pytest.mark.parametrize("bad", ["..", "../x", "/etc/passwd", "escape/x",
                                 ".", "", ".git/config", "a/../../x"])
def test_refused(tree, bad):
    with pytest.raises(PathError):
        canonical(bad, tree, tree)


def test_glob_specs(tree):
    assert canonical_spec("link/*.txt", tree, tree) == "a/*.txt"
    assert canonical_spec("*.txt", tree, os.path.join(tree, "a")) == "a/*.txt"
    assert claim_path("a/b/run*/out.txt") == "a/b"
    with pytest.raises(PathError):
        claim_path("*.txt")
    with pytest.raises(PathError):
        canonical_spec("a/*/../x", tree, tree)


@pytest.mark.parametrize("a,b,expected", [
    ("a", "a", True), ("a", "a/x", True), ("a/x", "a", True),
    ("a/x", "a/y", False), ("ab", "a", False), ("a", "a.txt", False),
])
def test_overlaps(a, b, expected):
    assert overlaps(a, b) is expected

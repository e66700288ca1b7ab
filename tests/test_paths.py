import os

import pytest

from datalad_hpcdata.dataset.paths import (
    PathError,
    canonical,
    canonical_spec,
    claim_path,
    contains,
    expand,
    inside,
    overlaps,
    within,
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


@pytest.mark.parametrize("path,root,expected", [
    ("/a", "/a", True), ("/a/b", "/a", True), ("/ab", "/a", False),
    ("/a", "/a/b", False), ("/a/b", "/", True), ("/", "/", True),
    ("/a/..b", "/a", True),
])
def test_within_is_lexical(path, root, expected):
    assert within(path, root) is expected


def test_within_resolves_nothing_inside_does(tree):
    # escape -> a directory outside the dataset
    assert within(os.path.join(tree, "escape", "x"), tree)
    assert not inside(os.path.join(tree, "escape", "x"), tree)
    assert inside(os.path.join(tree, "link", "b"), tree)


@pytest.mark.parametrize("outer,path,expected", [
    ("a", "a", True), ("a", "a/x", True), ("a/x", "a", False),
    ("a", "ab", False), ("a/b", "a/b/c/d", True), ("a", "b/a", False),
])
def test_contains(outer, path, expected):
    assert contains(outer, path) is expected


def test_expand_literal_and_glob(tree):
    open(os.path.join(tree, "a", "r1.txt"), "w").close()
    open(os.path.join(tree, "a", "b", "r2.txt"), "w").close()
    assert expand("a/b", tree) == ["a/b"]
    assert expand("a/nope", tree) == []
    assert expand("a/*.txt", tree) == ["a/r1.txt"]
    assert expand("a/**/*.txt", tree) == ["a/b/r2.txt", "a/r1.txt"]


def test_expand_root_with_glob_characters(tmp_path):
    root = tmp_path / "scratch[1]*?"
    (root / "res").mkdir(parents=True)
    (root / "res" / "x.txt").write_text("x")
    (tmp_path / "scratch1-x").mkdir()      # what an unescaped root would match
    (tmp_path / "scratch1-x" / "res").mkdir()
    (tmp_path / "scratch1-x" / "res" / "y.txt").write_text("y")
    assert expand("res/*.txt", str(root)) == ["res/x.txt"]

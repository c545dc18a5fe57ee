import pytest

from stackctl.runtime.images.build.dockerignore import Matcher, parse


def m(text):
    return Matcher(parse(text))


@pytest.mark.parametrize("patterns,path,excluded", [
    ("*.md", "README.md", True),
    ("*.md", "docs/README.md", False),  # * does not cross /
    ("**/*.md", "docs/a/README.md", True),
    ("**/*.md", "README.md", True),
    ("docs", "docs/a/b.txt", True),  # a matched parent excludes its children
    ("/docs/", "docs/x", True),
    ("./build", "build/out", True),
    ("temp?", "temp1", True),
    ("temp?", "temp12", False),
    ("[a-c].txt", "b.txt", True),
    ("[!a-c].txt", "b.txt", False),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("!README.md\n*.md", "README.md", True),  # the last matching pattern wins
    ("# comment\n\n  *.log  ", "x.log", True),
    ("a/**", "a/b/c", True),
    ("a/**/z", "a/z", True),
    ("a/**/z", "a/b/c/z", True),
    ("node_modules", "node_modulesx", False),
    ("\\*.txt", "*.txt", True),
])
def test_matches(patterns, path, excluded):
    assert m(patterns).excluded(path) is excluded


def test_may_include_below():
    assert m("docs\n!docs/keep.md").may_include_below("docs")
    assert not m("docs").may_include_below("docs")

"""The manifest check's path rules, written the fast way in manifest_check.py (one regular expression, one
string key), hold to their plain statement for any path."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from lifeline.agent import manifest_check
from lifeline.agent.manifest_check import check_manifest
from lifeline.repository.errors import DamagedData

_PATHS = st.text(alphabet="a.-/ \n\x00", min_size=1, max_size=12)


def _unsafe(path: str) -> bool:
    """The rule as the docs say it: absolute, a NUL, or an empty, "." or ".." component."""
    return path.startswith("/") or "\0" in path or any(p in ("", ".", "..") for p in path.split("/"))


@given(_PATHS)
def test_a_path_is_refused_exactly_when_it_is_unsafe(path):
    entries = [{"path": "", "type": "dir"}, {"path": path, "type": "file", "chunks": []}]
    if _unsafe(path):
        with pytest.raises(DamagedData, match="an unsafe path"):
            check_manifest(entries)
    else:
        check_manifest(entries)


@given(st.lists(_PATHS.filter(lambda p: not _unsafe(p)), min_size=2, max_size=6, unique=True))
def test_paths_in_component_order_pass_the_ordered_check_and_others_the_whole_one(paths):
    """A backup's order is the order of the paths' component lists; any other order is checked with
    every path at hand (the same verdict, in more memory): files that no path lies below pass both."""
    paths = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    whole = manifest_check._check_whole
    for order in (sorted(paths, key=lambda p: p.split("/")), sorted(paths), sorted(paths, reverse=True)):
        seen, wholes = [], []
        manifest_check._check_whole = lambda entries, bad: (wholes.append(1), whole(entries, bad))
        try:
            check_manifest([{"path": "", "type": "dir"}] + [{"path": p, "type": "file"} for p in order],
                           visit=lambda e: seen.append(e["path"]))
        finally:
            manifest_check._check_whole = whole
        assert seen == [""] + order
        in_component_order = order == sorted(paths, key=lambda p: p.split("/"))
        assert wholes == ([] if in_component_order else [1]), order  # (the ordered check took it, or not)


@settings(max_examples=300)
@given(st.lists(_PATHS.filter(lambda p: not _unsafe(p)), min_size=1, max_size=5, unique=True), st.data())
def test_an_entry_below_a_file_is_refused_in_any_order(paths, data):
    file = data.draw(st.sampled_from(paths))
    entries = [{"path": p, "type": "file" if p == file else "dir"} for p in paths if not p.startswith(file + "/")]
    entries.append({"path": file + "/x", "type": "file"})
    entries = data.draw(st.permutations(entries))  # (in a backup's order too, or in a string sort's)
    with pytest.raises(DamagedData, match=f"below {re.escape(repr(file))}"):
        check_manifest([{"path": "", "type": "dir"}] + entries)


@pytest.mark.parametrize("sep", [" ", "-", "."])
def test_a_name_that_sorts_before_the_slash_does_not_hide_an_entry_below_a_file(sep):
    """"a-b" sorts between "a" and "a/x" as strings, not as component lists: the check must not take
    this order for a backup's and compare "a/x" with "a-b" only."""
    entries = [{"path": "", "type": "dir"}, {"path": "a", "type": "file"}, {"path": f"a{sep}b", "type": "dir"},
               {"path": "a/x", "type": "file"}]
    with pytest.raises(DamagedData, match="below 'a'"):
        check_manifest(entries)


def test_names_ending_in_a_newline_are_names():
    """A "$" in the pattern would match before a last newline and refuse these genuine names."""
    entries = [{"path": "", "type": "dir"}, {"path": "\n", "type": "file"}, {"path": "d", "type": "dir"},
               {"path": "d/.\n", "type": "file"}, {"path": "d/..\n", "type": "file"}]
    check_manifest(entries)

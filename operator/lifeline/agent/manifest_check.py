"""A restore's first pass over a point's tree: the manifest check, which refuses a tree that no
backup makes before anything is written, and the :class:`Plan` it gathers on the way (directories,
special entries, hard links, totals). A large tree's two halves are checked on two cores
(:func:`checked_plan`)."""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from lifeline.repository.errors import DamagedData

SEGMENT = 8  # chunks per restore task (~8 MiB): large files are written by several threads; a file
# of at most this many is a small one (written whole, with its neighbours)

_CHUNK_ID = re.compile(r"[0-9a-f]{64}")  # a keyed BLAKE3 digest, as backup writes it
_UNSAFE_PATH = re.compile(r"(?:^|/)\.{0,2}(?:/|\Z)")  # absolute, or an empty, "." or ".." component
# (\Z, not $: "$" also matches before a last newline, and a file may be named "\n")


def check_manifest(entries: Iterable[dict], point_id: str = "?", visit=None) -> None:
    """Refuse, before anything is written, a tree that no backup makes (a forged or damaged
    manifest): a path that is absolute, empty (but for the root directory), or has an empty,
    ``.`` or ``..`` component; a path listed twice; an entry below a symlink or any other entry
    that is not a directory (a restore would have to write through it).

    ``entries``: a list or a :class:`~lifeline.repository.tree.Tree` (iterated once more for a tree
    with hard links, or one not in the order backups write). ``visit(entry)`` is called for each
    entry that passed its own checks, in order; the whole tree is checked before this returns.

    What it holds is small: a backup lists paths in order (a directory, then its entries by name,
    depth first), so a path listed twice shows as two paths out of order, and an entry below a
    file comes right after that file. A tree in any other order is checked with every path in
    memory, as it always was."""
    bad = _refusal(point_id)
    _finish(entries, _check_run(entries, bad, visit), bad)


def _refusal(point_id: str):
    def bad(why: str) -> DamagedData:
        return DamagedData(f"point {point_id}: the manifest holds {why}; nothing was restored "
                           "(a backup never records this: the manifest was forged or damaged)")
    return bad


class _Run:
    """What the order check knows after a run of entries (the whole tree, or one of its halves)."""

    def __init__(self):
        self.ordered = True
        self.first: tuple[str, str, str] | None = None  # (order key, path, kind) of the first entry
        self.last: tuple[str, str, str] | None = None  # ... of the last one (while ordered)
        self.links: list[tuple[int, str, str]] = []  # (position, path, target) of each hard link
        self.count = 0


def _check_run(entries: Iterable[dict], bad, visit, run: _Run | None = None) -> _Run:
    """Check each entry on its own and the order of the run; a refusal raises."""
    run = run or _Run()
    ordered, prev = run.ordered, run.last
    links, pos = run.links, run.count
    for e in entries:
        _check_entry(e, bad)
        path, kind = e["path"], e["type"]
        if ordered:
            key = path.replace("/", "\0")  # (no NUL in a path: the order of the components' lists)
            if prev is not None and key <= prev[0]:
                ordered = False  # (or listed twice): the exact checks below, with every path at hand
            elif prev is not None and prev[2] != "dir" and path.startswith(prev[1] + "/"):
                raise bad(f"{path!r} below {prev[1]!r}, which is a {prev[2]}, not a directory")
            prev = (key, path, kind)
            if run.first is None:
                run.first = prev
        if kind == "hardlink":
            links.append((pos, path, e["target"]))
        if visit is not None:
            visit(e)
        pos += 1
    run.ordered, run.last, run.count = ordered, prev, pos
    return run


def _finish(entries: Iterable[dict], run: _Run, bad) -> None:
    """The checks that need the whole run: every path at hand for a tree out of order; the hard
    links' targets (files listed before them) for one in order."""
    if not run.ordered:
        _check_whole(entries, bad)
    elif run.links:
        targets = {t for _pos, _path, t in run.links}
        found: dict[str, tuple[int, str]] = {}
        for pos, e in enumerate(entries):
            if e["path"] in targets:
                found.setdefault(e["path"], (pos, e["type"]))
        for pos, path, target in run.links:
            at, kind = found.get(target, (None, None))
            if kind != "file" or at > pos:
                raise bad(f"a hard link {path!r} whose target is not a file listed before it")


def _check_entry(e, bad) -> None:
    """The checks of one entry on its own."""
    if not isinstance(e, dict) or not isinstance(e.get("path"), str) or not isinstance(e.get("type"), str):
        raise bad("an entry without a path or a type")
    path, kind = e["path"], e["type"]
    if path == "":
        if kind != "dir":
            raise bad(f"a {kind} with an empty path (only the root directory has one)")
    elif "\0" in path or _UNSAFE_PATH.search(path):
        raise bad(f"an unsafe path {path!r} (absolute, or with an empty, '.' or '..' component)")
    get = e.get
    if not (type(get("mode", 0)) is type(get("uid", 0)) is type(get("gid", 0)) is type(get("mtime_ns", 0))
            is type(get("atime_ns", 0)) is type(get("size", 0)) is type(get("rdev", 0)) is int):
        raise bad(f"{path!r} with a mode, owner, time, size or device number that is not an integer")
    if kind == "symlink" and (not isinstance(e.get("target"), str) or "\0" in e["target"]):
        raise bad(f"a symlink {path!r} without a usable target")
    if kind == "hardlink" and not isinstance(e.get("target"), str):
        raise bad(f"a hard link {path!r} whose target is not a file listed before it")
    user, group = get("user", "-"), get("group", "-")
    if not (isinstance(user, str) and user and "\0" not in user and isinstance(group, str) and group
            and "\0" not in group):
        raise bad(f"{path!r} with an owner or group name that is not a name")
    if "xattrs" in e and not _good_xattrs(e["xattrs"]):
        raise bad(f"{path!r} with extended attributes that are not names and base64 values")
    if kind == "file":
        chunks = get("chunks", [])
        if type(chunks) is list and len(chunks) == 1:  # (most files)
            good = isinstance(chunks[0], str) and _CHUNK_ID.fullmatch(chunks[0])
        else:
            good = isinstance(chunks, list) and all(isinstance(c, str) and _CHUNK_ID.fullmatch(c) for c in chunks)
        if not good:
            raise bad(f"a file {path!r} whose chunk list is not chunk ids (64 hex digits each)")


def _check_whole(entries: Iterable[dict], bad) -> None:
    """The checks that need every path: for a tree not in a backup's order."""
    kinds: dict[str, str] = {}
    for e in entries:
        path, kind = e["path"], e["type"]
        if path in kinds:
            raise bad(f"{path!r} twice (a {kinds[path]} and a {kind})")
        kinds[path] = kind
        if kind == "hardlink" and kinds.get(e["target"]) != "file":  # (kinds: the entries before)
            raise bad(f"a hard link {path!r} whose target is not a file listed before it")
    beneath_dirs: set[str] = {""}  # paths known to be directories of the manifest, or absent from it
    for path in kinds:
        head = path.rpartition("/")[0]
        walked = []
        while head not in beneath_dirs:
            kind = kinds.get(head)
            if kind is not None and kind != "dir":
                raise bad(f"{path!r} below {head!r}, which is a {kind}, not a directory")
            walked.append(head)
            head = head.rpartition("/")[0]
        beneath_dirs.update(walked)


def _good_xattrs(xattrs) -> bool:
    if not isinstance(xattrs, dict):
        return False
    for name, value in xattrs.items():
        if not (isinstance(name, str) and name and "\0" not in name and isinstance(value, str)):
            return False
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
    return True



def _selector(includes: list[str] | None):
    """Whether an entry's path is restored with ``--path includes`` (None: all are)."""
    if not includes:
        return None
    inc = [i.strip("/") for i in includes]
    return lambda p: any(p == i or p.startswith(i + "/") or i.startswith(p + "/") or p == "" for i in inc)


class Plan:
    """What a restore to a directory learns in its first pass over the tree (while checking it):
    the directories and special entries it makes, the names of hard-linked files, the totals. The
    files themselves are restored in a second pass, as the tree is read again."""

    SPECIALS_MAX = 4096  # special entries kept from the first pass; more are read again

    def __init__(self, includes: list[str] | None):
        self.selected = _selector(includes)
        self.wanted = 0  # entries restored
        self.dirs: list[dict] = []
        self.specials: list[dict] = []
        self.more_specials = False
        self.files = 0
        self.small = self.small_bytes = 0  # files of at most SEGMENT chunks: written whole, span by span
        self.bytes = 0
        self.linked: list[tuple[str, str]] = []  # (hard link, its target), restored ones

    def visit(self, e: dict) -> None:
        if self.selected is not None and not self.selected(e["path"]):
            return
        self.wanted += 1
        t = e["type"]
        if t == "file":
            self.files += 1
            if len(e.get("chunks", ())) <= SEGMENT:
                self.small += 1
                self.small_bytes += e.get("size", 0)
            self.bytes += e.get("size", 0)
        elif t == "dir":
            self.dirs.append(e)
        elif t == "hardlink":
            self.linked.append((e["path"], e["target"]))
        elif len(self.specials) < self.SPECIALS_MAX:
            self.specials.append(e)
        else:
            self.more_specials = True

    _COUNTS = ("wanted", "files", "small", "small_bytes", "bytes")

    def state(self) -> dict:
        """What was gathered (to hand from a helper process to the restore, which absorbs it)."""
        return {**{k: getattr(self, k) for k in self._COUNTS}, "dirs": self.dirs, "specials": self.specials,
                "more_specials": self.more_specials, "linked": self.linked}

    def absorb(self, later: dict) -> None:
        """Add what a pass over the entries after these gathered (its :meth:`state`)."""
        for k in self._COUNTS:
            setattr(self, k, getattr(self, k) + later[k])
        self.dirs += later["dirs"]
        self.linked += later["linked"]
        self.specials += later["specials"]
        self.more_specials = self.more_specials or later["more_specials"] or len(self.specials) > self.SPECIALS_MAX
        del self.specials[self.SPECIALS_MAX:]

    def links(self, entries: Iterable[dict]) -> tuple[dict[str, list[str]], dict[str, dict]]:
        """The other names of each file restored (path -> hard link paths), and the stand-ins: a hard
        link whose first name is not restored (``--path``) stands in for it (path -> the entry it
        restores: the first name's, at the link's path); the others link to the stand-in."""
        links: dict[str, list[str]] = {}
        stand_in: dict[str, str] = {}  # first name not restored -> the link that stands in for it
        for path, first in self.linked:
            if self.selected is not None and not self.selected(first):
                if first not in stand_in:
                    stand_in[first] = path
                    continue
                first = stand_in[first]
            links.setdefault(first, []).append(path)
        stand_ins: dict[str, dict] = {}
        if stand_in:  # the first names' entries, read again: they came before their links
            for e in entries:
                if e["type"] == "file" and e["path"] in stand_in:
                    stand_ins[stand_in[e["path"]]] = {**e, "path": stand_in[e["path"]]}
                    self.files += 1
                    self.bytes += e.get("size", 0)
        return links, stand_ins




# --- a large tree's check, on two cores --------------------------------------------------------
SPLIT_FROM = 1 << 20  # compressed tree bytes (~20,000 entries) from which its halves are checked apart


def checked_plan(tree, point_id: str, includes: list[str] | None, *, meanwhile=None) -> Plan:
    """:func:`check_manifest` of ``tree`` (a :class:`~lifeline.repository.tree.Tree`), visited into
    a :class:`Plan`. A large tree's second half is checked by a helper process
    (:mod:`.manifest_check_main`) while this one checks the first: the check runs before anything
    is written, on one core while the other waits (200,000 entries: ~1.1 s). The halves' runs are
    then joined as one run would have gone on; anything unusual (a tree out of order, one whose
    middle is not where an entry begins) is checked whole, here, as always. ``meanwhile()`` is
    called once this process has checked its half, while the helper may still be at work."""
    at = tree.halfway() if len(tree.compressed) >= SPLIT_FROM else None
    helper = None
    if at is not None:
        try:
            helper = _start_helper(tree, at, point_id, includes)
        except Exception:  # noqa: BLE001 - a pod's process limit, no memory...: one core does it
            pass
    if helper is not None:
        try:
            return _in_halves(tree, at, point_id, includes, helper.answer, meanwhile)
        except _NotThere:
            pass
        finally:
            helper.close()
    plan = Plan(includes)
    check_manifest(tree, point_id, plan.visit)
    return plan


def _in_halves(tree, at: int, point_id: str, includes, second, meanwhile=None) -> Plan:
    """The check with the entries before byte ``at`` checked here and ``second()`` answering for
    those from ``at`` on (:func:`check_second_half`'s answer); _NotThere when they do not meet."""
    plan = Plan(includes)
    bad = _refusal(point_id)
    first = _check_run(_until(tree, at), bad, plan.visit)
    if meanwhile is not None:
        meanwhile()
    answer = second()
    if answer is None or answer.get("split") is False:  # (the helper found no entry there, or died)
        raise _NotThere
    joined = _join(first, answer.get("run"), answer.get("first"), bad)
    if "raise" in answer:
        raise answer["raise"]
    plan.absorb(answer["plan"])
    _finish(tree, joined, bad)
    return plan


class _NotThere(Exception):
    """The first half's last entry does not end where the second half begins."""


def _until(tree, at: int):
    """The entries before byte ``at``, which must end there: at least one (the second half's first
    begins with a ``,``), else _NotThere."""
    reader = tree.entry_reader(with_text=False)
    if reader is None:
        raise _NotThere
    first = True
    while True:
        offset = reader.offset
        if offset is None or offset > at:
            raise _NotThere
        if offset == at and not first:
            return
        try:
            e, _text = next(reader)
        except StopIteration:
            raise _NotThere from None
        first = False
        yield e


def _join(first: _Run, second: _Run | None, second_first, bad) -> _Run:
    """The run of the first half followed by the second's, as one run would have gone (a refusal
    at the seam raises, as one run's would). ``second`` is None when the second half was refused:
    then only the seam is checked (``second_first``: its first entry), which one run meets first."""
    head = second.first if second is not None else second_first
    ordered = first.ordered and (second is None or second.ordered)
    if first.ordered and head is not None and first.last is not None:
        key, path, _kind = head
        last_key, last_path, last_kind = first.last
        if key <= last_key:
            ordered = False
        elif last_kind != "dir" and path.startswith(last_path + "/"):
            raise bad(f"{path!r} below {last_path!r}, which is a {last_kind}, not a directory")
    joined = _Run()
    if second is not None:
        joined.ordered, joined.first = ordered, first.first or second.first
        joined.last = second.last
        joined.links = first.links + [(pos + first.count, path, target) for pos, path, target in second.links]
        joined.count = first.count + second.count
    return joined


def check_second_half(tree, at: int, point_id: str, includes: list[str] | None) -> dict:
    """The helper's part: the run from byte ``at`` on, and its plan; or ``split: False`` when no
    entry begins there; or the refusal raised, with the first entry met (for the seam)."""
    entries = tree.entries_from(at)
    if entries is None:
        return {"split": False}
    plan = Plan(includes)
    bad = _refusal(point_id)
    run = _Run()
    try:
        _check_run(entries, bad, plan.visit, run)
    except DamagedData as exc:
        return {"raise": exc, "first": run.first}
    return {"run": run, "plan": plan.state()}


class _Helper:
    def __init__(self, proc):
        self.proc = proc

    def answer(self) -> dict | None:
        from .restore_writers import receive

        try:
            return receive(self.proc.stdout)
        except Exception:  # noqa: BLE001 - a helper that died or spoke nonsense: one core checks it all
            return None

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _start_helper(tree, at: int, point_id: str, includes) -> _Helper:
    from . import helper_process
    from .restore_writers import send

    proc = helper_process.start("lifeline.agent.manifest_check_main")
    helper = _Helper(proc)
    try:
        send(proc.stdin, {"compressed": bytes(tree.compressed), "name": tree.name, "version": tree.version,
                          "at": at, "point_id": point_id, "includes": includes})
        proc.stdin.close()
    except OSError:
        helper.close()
        raise
    return helper

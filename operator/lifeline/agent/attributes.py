"""What a backup records of a file next to its data: owner names, extended attributes, and the text
an entry of a regular file begins with (:func:`file_head`), which an incremental compares with the
parent's entry. Kept apart from :mod:`.backup` so that the read-ahead helper, which renders those
beginnings for the backup (:mod:`.read_ahead`), starts without the repository's modules."""
from __future__ import annotations

import base64
import errno
import grp
import os
import pwd

from lifeline.repository.tree_text import entry_text

_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP}


class Attributes:
    """What a scan records next to the stat fields, at one system call per entry in the common case:
    owner names (looked up once per id) and extended attributes (one ``llistxattr``; ``lgetxattr``
    only for the names it lists). A filesystem that has no extended attributes is asked once.

    POSIX ACLs are the ``system.posix_acl_access`` / ``system.posix_acl_default`` attributes and are
    recorded as such (their bytes, as the kernel gives them). ``trusted.*`` attributes are listed only
    to root; ``security.*`` ones (SELinux labels, file capabilities) to anyone."""

    def __init__(self, warn):
        self.warn = warn
        self.users: dict[int, str | None] = {}
        self.groups: dict[int, str | None] = {}
        self.heads: dict[tuple[int, int, int], tuple[str, str]] = {}
        self.no_xattrs: set[int] = set()  # st_dev of filesystems that refused llistxattr

    def user(self, uid: int) -> str | None:
        try:
            return self.users[uid]
        except KeyError:
            return _look_up(self.users, uid, lambda i: pwd.getpwuid(i).pw_name)

    def group(self, gid: int) -> str | None:
        try:
            return self.groups[gid]
        except KeyError:
            return _look_up(self.groups, gid, lambda i: grp.getgrgid(i).gr_name)

    def head_parts(self, mode: int, uid: int, gid: int) -> tuple[str, str]:
        """What a file's entry text holds from after its path to ``"mtime_ns":``, and from after its
        atime to ``"size":`` (see :func:`.backup._entry_for`): the same for most files of a tree."""
        try:
            return self.heads[mode, uid, gid]
        except KeyError:
            pass
        user, group = self.user(uid), self.group(gid)
        owners = ((f',"user":{entry_text(user)}' if user is not None else "")
                  + (f',"group":{entry_text(group)}' if group is not None else ""))
        parts = (f',"mode":{mode},"uid":{uid},"gid":{gid},"mtime_ns":', f'{owners},"type":"file","size":')
        self.heads[mode, uid, gid] = parts
        return parts

    def xattrs(self, rel: str, full: str, dev: int) -> tuple[dict | None, bool]:
        """(the extended attributes by name, base64 values; whether all of them could be read)."""
        if dev in self.no_xattrs:
            return None, True
        try:
            names = os.listxattr(full, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _NO_XATTRS:
                self.no_xattrs.add(dev)
            elif exc.errno != errno.ENOENT:
                self.warn(rel, f"cannot list extended attributes ({exc.strerror}); backed up without them")
                return None, False
            return None, True
        if not names:
            return None, True
        out, complete = {}, True
        for name in sorted(names):
            try:
                value = os.getxattr(full, name, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.ENOENT):  # (removed meanwhile)
                    self.warn(rel, f"cannot read extended attribute {name} ({exc.strerror}); backed up without it")
                    complete = False
                continue
            out[name] = base64.b64encode(value).decode("ascii")
        return out or None, complete


def _look_up(names: dict[int, str | None], number: int, name_of) -> str | None:
    """The name of a user or group ``number`` (None if it has none), remembered in ``names``."""
    try:
        name = name_of(number)
    except (KeyError, OverflowError):
        name = None
    names[number] = name
    return name


def file_head(rel: str, st: os.stat_result, attrs: Attributes) -> str:
    """The text a regular file's entry (:func:`.backup._entry_for`) begins with, up to its change time (then
    its attributes and chunks), in its order, as :func:`entry_text` writes it: what an incremental
    compares with the parent's entry (:mod:`.parent_cursor`)."""
    path = f'"{rel}"' if rel.isascii() and rel.isprintable() and '"' not in rel and "\\" not in rel \
        else entry_text(rel)
    before, after = attrs.head_parts(st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return (f'{{"path":{path}{before}{st.st_mtime_ns},"atime_ns":{st.st_atime_ns}{after}{st.st_size},'
            f'"ino":{st.st_ino},"ctime_ns":{st.st_ctime_ns},')

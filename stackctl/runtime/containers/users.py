"""Resolve a container's ``user`` as Docker (libcontainer's GetExecUser) does. Pure: the caller
passes the text of the image's /etc/passwd and /etc/group (or ``None`` if absent).

``user`` forms: ``""`` (root), ``name``, ``uid``, ``name:group``, ``uid:gid``, ``name:gid``,
``uid:group``. A name must exist in /etc/passwd; a numeric uid need not (gid then defaults to
0 and home to ``/``). When no group is given, the supplementary groups are those of /etc/group
that list the user's name; an explicit group replaces them.
"""

from __future__ import annotations

from typing import NamedTuple


class UserLookupError(ValueError):
    """The user or group named in ``user`` does not exist in the image."""


class ExecUser(NamedTuple):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str


class PasswdEntry(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str
    shell: str


class GroupEntry(NamedTuple):
    name: str
    gid: int
    members: tuple[str, ...]


def _records(text: str, min_fields: int):
    """The colon-separated fields of each line with at least ``min_fields`` of them (blank
    lines and comments skipped)."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            f = line.split(":")
            if len(f) >= min_fields:
                yield f


def parse_passwd(text: str) -> list[PasswdEntry]:
    out = []
    for f in _records(text, 4):
        try:
            uid, gid = int(f[2]), int(f[3])
        except ValueError:
            continue
        out.append(PasswdEntry(f[0], uid, gid, f[5] if len(f) > 5 else "", f[6] if len(f) > 6 else ""))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    out = []
    for f in _records(text, 3):
        try:
            gid = int(f[2])
        except ValueError:
            continue
        members = tuple(m for m in (f[3].split(",") if len(f) > 3 else []) if m)
        out.append(GroupEntry(f[0], gid, members))
    return out


def _int_or_none(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def resolve_user(user: str, passwd_text: str | None, group_text: str | None) -> ExecUser:
    """Turn ``user`` into uid, gid, supplementary groups and home, from the image's files."""
    user_arg, _, group_arg = (user or "").partition(":")
    users = parse_passwd(passwd_text or "")
    uid, gid, home, name = 0, 0, "/", ""
    matched_name = False
    if user_arg == "":
        for e in users:
            if e.uid == 0:
                uid, gid, home, name, matched_name = 0, e.gid, e.home or "/", e.name, True
                break
    else:
        num = _int_or_none(user_arg)
        match = next((e for e in users if e.name == user_arg or (num is not None and e.uid == num)), None)
        if match is not None:
            uid, gid, home, name, matched_name = match.uid, match.gid, match.home or "/", match.name, True
        elif num is not None:
            if num > 0x7FFFFFFF:
                raise UserLookupError(f"uid {num} is out of range")
            uid = num
        elif passwd_text is None:
            raise UserLookupError(f"unable to find user {user_arg}: no /etc/passwd in the image")
        else:
            raise UserLookupError(f"unable to find user {user_arg}: no matching entries in passwd file")

    groups: tuple[int, ...] = ()
    if group_arg or matched_name:
        entries = parse_group(group_text or "")
        if group_arg:
            gnum = _int_or_none(group_arg)
            g = next((e for e in entries if e.name == group_arg or (gnum is not None and e.gid == gnum)), None)
            if g is not None:
                gid = g.gid
            elif gnum is not None:
                if gnum > 0x7FFFFFFF:
                    raise UserLookupError(f"gid {gnum} is out of range")
                gid = gnum
            elif group_text is None:
                raise UserLookupError(f"unable to find group {group_arg}: no /etc/group in the image")
            else:
                raise UserLookupError(f"unable to find group {group_arg}: no matching entries in group file")
        else:
            groups = tuple(e.gid for e in entries if name and name in e.members)
    return ExecUser(uid, gid, groups, home, name)

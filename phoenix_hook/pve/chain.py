"""Chained hookscripts: the record install.sh --chain writes, tied to one guest.

A guest has one hookscript (REFERENCE section 1); `install.sh --chain` gives a
guest that had one ours instead, and records the previous one here so the
hook runs it after itself. The record must never run for another guest:

- It lives in <pve_root>/phoenix-hook/chain/<vmid>.json, on pmxcfs, so every
  node sees it: after a migration the target node runs the same previous
  hookscript, and `install.sh --uninstall` there can give it back.
- It names the guest by what a new guest or a clone with the same VMID does
  not share: the MACs of its NICs (PVE draws new ones for a new guest and
  for `pct clone` / `qm clone`) and, for a VM, its `vmgenid` (a new UUID on
  create and clone; qemu-server). A record whose guest no longer matches is
  not run, and the hook says so.
- The record, its directory and the previous hookscript it names must be
  root's and not writable by group or others before anything is run as root.

Record (JSON): {"vmid", "type" ("ct"|"vm"), "volid", "path", "macs": [..],
"vmgenid": str|null}. install.sh writes it; this module only reads.
"""
from __future__ import annotations

import os
import stat

SUBDIR = ("phoenix-hook", "chain")


class ChainError(Exception):
    """A record that cannot be trusted or read; str() is the line for the task log."""


class Record:
    """One chain record. A plain class: dataclasses costs the hook's other phases
    more to import than everything else they do."""
    __slots__ = ("vmid", "volid", "path", "macs", "vmgenid", "file")

    def __init__(self, vmid: int, volid: str, path: str, macs: frozenset, vmgenid: str | None, file: str):
        self.vmid, self.volid, self.path, self.macs, self.vmgenid, self.file = vmid, volid, path, macs, vmgenid, file


def directory(pve_root: str) -> str:
    return os.path.join(pve_root, *SUBDIR)


def record_path(pve_root: str, vmid: int) -> str:
    return os.path.join(directory(pve_root), f"{vmid}.json")


def unsafe(st, what: str, path: str) -> str | None:
    """Why a file or directory may not be trusted to run things as root, or None."""
    if st.st_uid != 0:
        return f"{what} {path} is not owned by root (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def load(pve_root: str, vmid: int) -> Record | None:
    """The record for vmid, None when there is none. ChainError for one that is unsafe or unreadable."""
    path = record_path(pve_root, vmid)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChainError(f"cannot read the chain record {path}: {exc.strerror}") from None
    try:
        why = unsafe(os.fstat(fd), "the chain record", path) or unsafe(
            os.stat(directory(pve_root)), "the chain directory", directory(pve_root))
        if why:
            raise ChainError(why)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(65536)
    finally:
        os.close(fd)
    import json
    try:
        data = json.loads(raw.decode("utf-8"))
        rec = Record(vmid=int(data["vmid"]), volid=str(data["volid"]), path=str(data["path"]),
                     macs=frozenset(m.lower() for m in data.get("macs") or []),
                     vmgenid=(str(data["vmgenid"]).lower() if data.get("vmgenid") else None), file=path)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ChainError(f"the chain record {path} is not one install.sh wrote; "
                         f"re-run install.sh --attach {vmid} --chain") from None
    if rec.vmid != vmid or not rec.path.startswith("/"):
        raise ChainError(f"the chain record {path} is not one install.sh wrote; "
                         f"re-run install.sh --attach {vmid} --chain")
    return rec


def identity(config_text: str, guest) -> tuple[frozenset, str | None]:
    """(MACs, vmgenid) of a guest: its NICs' MACs and the current section's vmgenid."""
    macs = frozenset(n.hwaddr for n in guest.nics if n.hwaddr)
    vmgenid = None
    for line in config_text.split("\n"):
        if line.startswith("["):
            break
        key, sep, value = line.partition(":")
        if sep and key.strip() == "vmgenid":
            v = value.strip().lower()
            vmgenid = v if v not in ("", "0", "1") else None   # 1: "generate one", 0: none
    return macs, vmgenid


def mismatch(rec: Record, macs, vmgenid) -> str | None:
    """Why the record is not this guest's, or None when it is. Pure.

    vmgenid decides when both have one; else at least one MAC must be shared
    (a NIC added or replaced since keeps the rest). A record naming neither
    cannot be tied to any guest and never runs.
    """
    if rec.vmgenid and vmgenid:
        if rec.vmgenid == vmgenid:
            return None
        return f"its vmgenid is {vmgenid}, the record's {rec.vmgenid} (a clone or a new VM with this ID?)"
    if rec.macs and macs:
        if rec.macs & macs:
            return None
        return (f"none of its MACs ({', '.join(sorted(macs))}) is one the record names "
                f"({', '.join(sorted(rec.macs))}): a new guest or a clone with this ID?")
    if not rec.macs and not rec.vmgenid:
        return "the record names no MAC and no vmgenid to recognise the guest by"
    return "the guest has no MAC or vmgenid left to compare with the record's"


def check_script(path: str) -> str | None:
    """Why the previous hookscript may not be run as root, or None. Symlinks are followed
    (PVE runs the volume's path), and the file it resolves to and its directory are checked."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        dst = os.stat(os.path.dirname(real))
    except OSError:
        return None                       # missing: the caller's "missing or not executable"
    if not stat.S_ISREG(st.st_mode):
        return f"the chained hookscript {path} is not a regular file"
    return unsafe(st, "the chained hookscript", real) or unsafe(dst, "the directory of", os.path.dirname(real))

"""Node-local address claims: two guests of this node starting at once with one address.

Both hooks probe from the same bridge MAC, and RFC 5227 ignores probes from
our own MAC, so neither sees the other on the wire, and for a few seconds
after pre-start the first guest's interface does not exist yet to answer
(REFERENCE section 2). So each hook claims its addresses in a file under
run_dir (tmpfs: cleared at boot) before probing. A fresh claim by another
guest is a conflict; claims expire after CLAIM_TTL_S, by which time the
first guest is up and answers ARP itself.

A claim only counts while its holder still means it: the caller's
still_holds(vmid, age) says so (the hook: the holder's config still has
the address, and it is running or started under STARTING_S ago), so a
guest that was stopped, renumbered or deleted blocks nobody.
"""
from __future__ import annotations

import os
import time

CLAIM_TTL_S = 60.0
STARTING_S = 15.0      # pre-start to the guest's interface being up, generously
# Root opens claim files without following symlinks: a link planted in run_dir must
# not make the hook read or write another file (O_EXCL on the new file does the same).
_NOFOLLOW = os.O_NOFOLLOW


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd) as f:
        return f.read(256)


def _path(run_dir: str, ip: str, bridge: str, vlan: int | None) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in bridge)
    name = f"{ip}@{safe}" + (f".{vlan}" if vlan is not None else "")
    return os.path.join(run_dir, "claims", name)


def fresh_holder(text: str, vmid: int, now: float, ttl: float = CLAIM_TTL_S) -> tuple[int, float] | None:
    """(other vmid, age) if text is a fresh claim by another guest, else None. Pure."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    try:
        other, at = int(parts[0]), float(parts[1])
    except ValueError:
        return None
    age = now - at
    # -1 s: the claim's time is written rounded, and clocks of two processes agree
    # only so well; a claim 'from the future' is still a claim.
    if other == vmid or not -1.0 <= age < ttl:
        return None
    return other, age


def claim(run_dir: str, vmid: int, ip: str, bridge: str, vlan: int | None,
          now: float | None = None, still_holds=None, clock=time.time) -> tuple[int, float] | None:
    """Claim ip for vmid. Returns (other vmid, age in s) when another guest holds it, else None.

    Read, decide and write happen under one exclusive flock on the claims
    directory, so of two hooks starting at once exactly one wins, whether or
    not an old claim file is there. A stale or own claim, or one whose
    holder no longer means it (still_holds), is taken over.
    """
    import fcntl
    path = _path(run_dir, ip, bridge, vlan)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    lock = os.open(os.path.join(os.path.dirname(path), ".lock"), os.O_WRONLY | os.O_CREAT | _NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The time is read under the lock: read before it, a loser could see
        # the winner's claim as written "in the future" and take it over.
        now = clock() if now is None else now
        try:
            held = fresh_holder(_read(path), vmid, now)
        except OSError:
            held = None
        if held and (still_holds is None or still_holds(*held)):
            return held
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.unlink(tmp)             # a leftover of a killed run (or a planted link)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{vmid} {now:.6f}\n")
        os.replace(tmp, path)          # none, stale, void or our own: ours now
        return None
    finally:
        os.close(lock)                 # releases the flock


def release_all(run_dir: str, vmid: int) -> None:
    """Drop every claim of vmid (its start did not happen after all)."""
    d = os.path.join(run_dir, "claims")
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        if name.startswith(".") or name.endswith(".tmp"):
            continue
        try:
            mine = _read(os.path.join(d, name)).split()[:1] == [str(vmid)]
            if mine:
                os.unlink(os.path.join(d, name))
        except OSError:
            pass


def release(run_dir: str, vmid: int, ip: str, bridge: str, vlan: int | None) -> None:
    """Drop our claim (the start was refused); another guest's claim is left alone."""
    path = _path(run_dir, ip, bridge, vlan)
    try:
        if _read(path).split()[:1] == [str(vmid)]:
            os.unlink(path)
    except (OSError, IndexError):
        pass

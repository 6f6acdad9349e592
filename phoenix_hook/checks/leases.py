"""What DHCP leases mean against the guest configs. Pure.

The lease files themselves are read by checks/leasefiles.py (dnsmasq, ISC
dhcpd, Kea memfile). Each active lease gets an owner and flags:
STATIC-IP (a guest's static address leased to another MAC: the outage's likely
cause) and GUEST (a guest's own lease); audit turns STATIC-IP into dhcp-lease
findings.
"""
from __future__ import annotations

import time
from phoenix_hook.records import dataclass, field

from phoenix_hook.checks.leasefiles import Lease
from phoenix_hook.pve.guest import static_addresses

STATIC_IP, GUEST = "STATIC-IP", "GUEST"


# -- what the leases mean ------------------------------------------------------------
def active(files, now: float) -> list[Lease]:
    """Every active lease of every file, in file order."""
    return [lease for f in files for lease in f.leases if lease.active(now)]


@dataclass
class LeaseRow:
    lease: Lease
    owner: str | None = None           # "CT 951 embed-api"
    owner_vmid: int | None = None
    owner_nic: str | None = None
    flags: list = field(default_factory=list)
    guest: object = None               # the owner Guest, for audit findings

    def to_json(self) -> dict:
        return {**self.lease.to_json(), "owner": self.owner, "owner_vmid": self.owner_vmid,
                "flags": list(self.flags)}


def rows(leases, guests) -> list[LeaseRow]:
    """One row per active lease: its owner (the guest whose static address it is, else
    the guest whose MAC took it) and flags STATIC-IP / GUEST. Templates own nothing."""
    static = static_addresses(guests)
    macs: dict[str, tuple] = {}
    for g in guests:
        if g.template:
            continue
        for n in g.nics:
            if not n.error and n.hwaddr:
                macs.setdefault(n.hwaddr, (g, n))
    out = []
    for lease in leases:
        row = LeaseRow(lease=lease)
        by_ip = static.get(lease.ip, [])
        mine = macs.get(lease.mac) if lease.mac else None
        if mine is not None:
            row.flags.append(GUEST)
        strangers = [(g, n) for g, n in by_ip if not (n.hwaddr and n.hwaddr == lease.mac)]
        if by_ip and len(strangers) == len(by_ip):
            row.flags.append(STATIC_IP)
        who = (by_ip and ([gn for gn in by_ip if gn not in strangers] or by_ip)[0]) or mine
        if who:
            row.guest, nic = who
            row.owner, row.owner_vmid, row.owner_nic = row.guest.titled, row.guest.vmid, nic.key
        out.append(row)
    return out


def exit_code(rows_) -> int:
    return 1 if any(STATIC_IP in r.flags for r in rows_) else 0


def until_words(epoch: int | None, now: float) -> str:
    """'until 14:02' today, 'until 2025-09-18 14:02' later, 'with no expiry' (local time)."""
    if epoch is None:
        return "with no expiry"
    try:
        t, today = time.localtime(epoch), time.localtime(now)
    except (OverflowError, OSError, ValueError):
        return "until an unreadable time"
    if t[:3] == today[:3]:
        return "until " + time.strftime("%H:%M", t)
    return "until " + time.strftime("%Y-%m-%d %H:%M", t)


def findings(rows_, now: float) -> list:
    """audit's dhcp-lease findings: one per STATIC-IP lease, naming both sides."""
    from phoenix_hook.checks.audit import AuditFinding, Where
    out = []
    for r in rows_:
        if STATIC_IP not in r.flags or r.guest is None:
            continue
        g, lease = r.guest, r.lease
        w = Where(g.vmid, g.type, g.node, r.owner_nic, g.name, g.template)
        who = f"{lease.mac or 'a client'}" + (f" ('{lease.hostname}')" if lease.hostname else "")
        out.append(AuditFinding(
            "dhcp-lease", f"{lease.ip} is leased to {who} {until_words(lease.expires, now)} "
            f"({lease.file}), but it is the static address of {w.label}"
            + (f" on {g.node}" if g.node else "") + "; reserve it in the DHCP server "
            "(phoenix-hook reservations) or move it out of the pool", (w,), ip=lease.ip, mac=lease.mac))
    return out

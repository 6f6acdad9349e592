"""A sweep's answers, attributed: one row per (address, MAC) heard, its owner and flags. Pure.

Used by `scan` (answers from net/sweep.py) and, for its vendor words, `neigh`.
Owners and flags come from owners.py (guest configs, this host, the nodes).
"""
from __future__ import annotations

import ipaddress
from phoenix_hook.records import dataclass, field

from phoenix_hook.checks.owners import DUP, MISMATCH, Owners
from phoenix_hook.net.scan import ip_int, ip_str


# -- the result -----------------------------------------------------------------
@dataclass
class Row:
    ip: str
    mac: str
    vendor: str | None
    owner: str | None
    owner_vmid: int | None
    flags: list = field(default_factory=list)
    owner_by: str | None = None     # "address" | "mac" | None
    mac_owner: str | None = None    # MAC-MISMATCH: the guest this MAC belongs to

    def to_json(self) -> dict:
        return {"ip": self.ip, "mac": self.mac, "vendor": self.vendor, "owner": self.owner,
                "owner_vmid": self.owner_vmid, "flags": list(self.flags), "owner_by": self.owner_by,
                "mac_owner": self.mac_owner}


def vendor_words(mac: str, lookup) -> str | None:
    """The OUI's organisation, "locally administered" when the U/L bit says so, else None."""
    v = lookup(mac)
    if v:
        return v
    if int(mac[:2], 16) & 0x02:                 # IEEE 802 U/L bit
        return "locally administered"
    return None


def build_rows(answers: dict, owners: Owners, vendor_of=lambda mac: None) -> list[Row]:
    """One row per (ip, mac) heard; answers maps ip (str or int) -> {mac: ...}."""
    rows = []
    for key in sorted(answers, key=lambda k: ip_int(k) if isinstance(k, str) else k):
        ip = key if isinstance(key, str) else ip_str(key)
        macs = list(answers[key])
        for mac in sorted(macs):
            a = owners.attribute(ip, mac, macs)
            rows.append(Row(ip=ip, mac=mac, vendor=vendor_words(mac, vendor_of), **a))
    return rows


@dataclass(frozen=True)
class Silent:
    ip: str
    vmid: int | None
    nic: str | None
    owner: str
    node: str | None

    def to_json(self) -> dict:
        return {"ip": self.ip, "vmid": self.vmid, "nic": self.nic, "owner": self.owner, "node": self.node}


def silent(claims, net: ipaddress.IPv4Network, heard) -> list[Silent]:
    """Guest addresses in net that nobody answered for (a stopped guest, or one unreachable)."""
    out = []
    for c in claims:
        if c.kind != "guest" or c.ip in heard:
            continue
        try:
            if ipaddress.IPv4Address(c.ip) not in net:
                continue
        except ValueError:
            continue
        out.append(Silent(ip=c.ip, vmid=c.vmid, nic=c.nic, owner=c.owner, node=c.node))
    return sorted(set(out), key=lambda s: (ip_int(s.ip), s.vmid or 0, s.nic or ""))


def exit_code(flag_lists) -> int:
    """0 nothing wrong, 1 a DUP or MAC-MISMATCH anywhere (as `check`: a conflict)."""
    return 1 if any(DUP in f or MISMATCH in f for f in flag_lists) else 0

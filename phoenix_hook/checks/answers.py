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


def flag_words(flags, mac_owner) -> str:
    """The FLAGS cell of scan's and neigh's tables: the flags, and whose MAC it is."""
    return " ".join(list(flags) + ([f"(MAC of {mac_owner})"] if mac_owner else []))


# -- the neighbour table (`neigh`): the same owners and flags, one address space ----------
def _dup_key(e) -> tuple:
    """Which entries must agree on one MAC: the same address, and for a link-local one
    (fe80::/10, 169.254.0.0/16) the same device too. Each link has its own link-local
    space (RFC 4291 2.5.6, RFC 3927 2.1): fe80::1 on vmbr0 and on vmbr1 are two hosts."""
    try:
        link_local = ipaddress.ip_address(e.ip).is_link_local
    except ValueError:
        link_local = False
    return (e.ip, e.dev) if link_local else (e.ip, None)


def neigh_rows(entries, owners: Owners, vendor_of=lambda mac: None, include_unresolved=False):
    """`neigh`: neighbour entries -> row dicts with owner and flags, sorted by family and address."""
    macs_by_key: dict[tuple, set] = {}
    for e in entries:
        if e.mac:
            macs_by_key.setdefault(_dup_key(e), set()).add(e.mac)
    rows = []
    for e in entries:
        if e.mac is None and not include_unresolved:
            continue
        a = owners.attribute(e.ip, e.mac, macs_by_key.get(_dup_key(e), ()))
        rows.append({"ip": e.ip, "family": e.family, "mac": e.mac, "dev": e.dev, "state": list(e.state),
                     "vendor": vendor_words(e.mac, vendor_of) if e.mac else None, **a})
    rows.sort(key=lambda r: (r["family"], ipaddress.ip_address(r["ip"]), r["dev"] or "", r["mac"] or ""))
    return rows

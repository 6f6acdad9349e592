"""The whole cluster at config level, no probing: what is wrong before anything starts. Pure.

Findings (each names every guest involved):
- duplicate-ip       two NICs configured with the same static IPv4 in the same VLAN
- duplicate-mac      two NICs with the same MAC (a clone that kept its MAC)
- dhcp-pool          a static IPv4 inside a DHCP pool (settings dhcp_ranges)
- node-address       a guest IPv4 that is a cluster node's address
- gateway-address    a guest IPv4 that is a gateway (its own, or other guests');
                     a router guest that really is that gateway: list its
                     address in `ignore` of the settings
- network-address, broadcast-address, gateway-outside-subnet: an address that
                     cannot work in its own subnet (addressing.address_problems)
- malformed          a netN/ipconfigN line (or a whole config) that cannot be read
- dhcp-lease         a DHCP server leased a guest's static address to another MAC
                     (settings dhcp_leases; checks/leases.py)
- drift, and duplicate-ip from a live address: `audit --live` (checks/live.py)
- unprotected, hookscript-missing: which guests phoenix-hook really guards (coverage.py)

"Same VLAN": the NIC's tag, untagged being one VLAN of its own; bridge names
differ from node to node, VLAN tags do not.
"""
from __future__ import annotations

import json
from phoenix_hook.records import dataclass

from phoenix_hook.checks.addressing import address_problems, dhcp_pool
from phoenix_hook.checks.report import printable
from phoenix_hook.pve.guest import Guest, label_for

ORDER = ("duplicate-ip", "duplicate-mac", "dhcp-pool", "dhcp-lease", "drift", "node-address",
         "gateway-address", "network-address", "broadcast-address", "gateway-outside-subnet", "malformed",
         "hookscript-missing", "unprotected")     # coverage.py's, last


@dataclass(frozen=True)
class Where:
    vmid: int
    type: str
    node: str | None
    nic: str | None
    name: str | None = None
    template: bool = False

    @property
    def label(self) -> str:
        return label_for(self.type, self.vmid) + (f" {self.nic}" if self.nic else "")

    def to_json(self) -> dict:
        return {"vmid": self.vmid, "type": self.type, "node": self.node, "nic": self.nic,
                "name": self.name, "template": self.template}


@dataclass(frozen=True)
class AuditFinding:
    kind: str
    detail: str
    guests: tuple[Where, ...]
    ip: str | None = None
    mac: str | None = None

    @property
    def vmids(self) -> list[int]:
        return sorted({w.vmid for w in self.guests})

    def to_json(self) -> dict:
        return {"kind": self.kind, "vmids": self.vmids, "ip": self.ip, "mac": self.mac,
                "detail": self.detail, "guests": [w.to_json() for w in self.guests]}


def where_of(g: Guest, key: str | None = None) -> Where:
    """Where a finding points: the guest, and its NIC when key names one."""
    return Where(g.vmid, g.type, g.node, key, g.name, g.template)


def _who(ws) -> str:
    parts = []
    for w in ws:
        extra = " (template)" if w.template else ""
        parts.append(f"{w.label}{extra}" + (f" on {w.node}" if w.node else ""))
    return ", ".join(parts)


def audit(guests: list[Guest], *, dhcp_ranges=(), node_ips=None, ignored=None) -> list[AuditFinding]:
    node_ips = node_ips or {}
    out: list[AuditFinding] = []
    by_ip: dict = {}
    by_mac: dict = {}
    gateways: dict = {}
    for g in guests:
        for e in g.errors:
            out.append(AuditFinding("malformed", f"{g.label}: {e}", (where_of(g),)))
        for n in g.nics:
            w = where_of(g, n.key)
            if n.error:
                out.append(AuditFinding("malformed", f"{w.label}: {n.error}", (w,), mac=n.hwaddr))
                continue
            if n.address:
                by_ip.setdefault((n.address, n.tag), []).append(w)
                if n.gw:
                    gateways.setdefault((n.gw, n.tag), []).append(w)
            if n.hwaddr:
                by_mac.setdefault(n.hwaddr, []).append(w)

    for (ip, tag), ws in by_ip.items():
        if len(ws) > 1:
            vlan = f" in VLAN {tag}" if tag else ""
            out.append(AuditFinding("duplicate-ip", f"{ip}{vlan} is configured on {_who(ws)}", tuple(ws), ip=ip))
    for mac, ws in by_mac.items():
        if len(ws) > 1:
            out.append(AuditFinding("duplicate-mac", f"MAC {mac} is on {_who(ws)}; give the clones "
                                    f"new MACs (pct set VMID --netN ...,hwaddr=...)", tuple(ws), mac=mac))
    for g in guests:
        for n in g.nics:
            if n.error or not n.address:
                continue
            w = where_of(g, n.key)
            pool = dhcp_pool(n.address, dhcp_ranges)
            if pool:
                out.append(AuditFinding("dhcp-pool", f"{w.label}: {n.address} is inside the DHCP pool "
                                        f"{pool[0]}-{pool[1]}; reserve it (phoenix-hook reservations) "
                                        f"or move it out of the pool", (w,), ip=n.address))
            if n.address in node_ips:
                out.append(AuditFinding("node-address", f"{w.label}: {n.address} is the address of "
                                        f"cluster node {node_ips[n.address]}", (w,), ip=n.address))
            for kind, words in address_problems(n.address, n.prefixlen, n.gw):
                out.append(AuditFinding(kind, f"{w.label}: {words}", (w,), ip=n.address))
            users = [u for u in gateways.get((n.address, n.tag), []) if u.vmid != g.vmid]
            if users and not (ignored and ignored(n.address)):
                shown = _who(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
                out.append(AuditFinding("gateway-address", f"{w.label}: {n.address} is the gateway of "
                                        f"{shown} (a router guest? add it to ignore)", (w,) + tuple(users),
                                        ip=n.address))
    return sort_findings(out)


def sort_findings(found: list[AuditFinding]) -> list[AuditFinding]:
    return sorted(found, key=lambda f: (ORDER.index(f.kind), f.vmids, f.ip or "", f.mac or ""))


def to_json(findings: list[AuditFinding], guests: list[Guest], extra: dict | None = None) -> str:
    return json.dumps({"verdict": "found" if findings else "clear",
                       "guests": len(guests), "nics": sum(len(g.nics) for g in guests),
                       "findings": [f.to_json() for f in findings], **(extra or {})}, indent=2)


def table(findings: list[AuditFinding], guests: list[Guest], color: bool = False,
          width: int | None = None) -> str:
    """width: the terminal's columns (wrap to fit); None: one finding per line."""
    from phoenix_hook.checks.grid import grid, sgr, wrap_lines
    n_nics = sum(len(g.nics) for g in guests)
    summary = f"{len(guests)} guests, {n_nics} NICs"
    if not findings:
        return f"no findings ({summary})"
    rows = []
    for f in findings:
        v = f.vmids
        rows.append((f.kind, ",".join(map(str, v[:4])) + (f",+{len(v) - 4}" if len(v) > 4 else ""),
                     printable(f.ip or f.mac or "-"), [printable(f.detail)]))

    def painter(column, text):
        return sgr("31;1", text) if column == "KIND" else text
    lines = grid(("KIND", "GUESTS", "ADDRESS", "DETAIL"), rows, width, painter if color else None)
    lines += wrap_lines([f"{len(findings)} finding{'s' if len(findings) != 1 else ''} ({summary})"], width)
    return "\n".join(lines)

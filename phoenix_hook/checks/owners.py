"""Who claims an address: guests, this host, the cluster's nodes. Pure.

Owners come from the guest configs (guest.py), this host's own addresses
and the cluster's node list (corosync.conf); flags are the admin's words:
  DUP           several MACs answer for one address: a live conflict
  MAC-MISMATCH  the address's owner is configured with another MAC
  UNCLAIMED     it answers, but no guest, node or host claims it
Used by `scan` (checks/answers.py) and `neigh`.
"""
from __future__ import annotations

from phoenix_hook.records import dataclass

DUP, MISMATCH, UNCLAIMED = "DUP", "MAC-MISMATCH", "UNCLAIMED"
FLAGS = (DUP, MISMATCH, UNCLAIMED)


@dataclass(frozen=True)
class Claim:
    """Someone configured to hold an address: a guest NIC, this host, a cluster node."""
    ip: str
    owner: str                 # "CT 951 embed-api", "VM 120 web", "host pve1"
    vmid: int | None = None
    nic: str | None = None     # "net0"
    mac: str | None = None     # the configured MAC, lower-case; None when not known
    node: str | None = None
    kind: str = "guest"        # "guest" | "host" | "node"


def guest_claims(guests, bridge: str | None = None, vlan: int | None = None, ipv6: bool = False):
    """Static addresses of every guest NIC (templates never run, so they claim nothing).

    With bridge given, only NICs on that bridge and VLAN (tag) count: the
    same address on another segment is another host, not a conflict.
    """
    out = []
    for g in guests:
        if g.template:
            continue
        for n in g.nics:
            if n.error or (bridge is not None and (n.bridge != bridge or n.tag != vlan)):
                continue
            ips = [n.address] + ([n.address6] if ipv6 else [])   # address6: static ip6= only (guest.py)
            for ip in filter(None, ips):
                out.append(Claim(ip=ip, owner=g.titled, vmid=g.vmid, nic=n.key, mac=n.hwaddr,
                                 node=g.node))
    return out


def mac_claims(guests) -> dict[str, Claim]:
    """Configured MAC -> the guest NIC it belongs to (DHCP and SLAAC guests too)."""
    out = {}
    for g in guests:
        for n in g.nics:
            if n.hwaddr and not g.template:
                out.setdefault(n.hwaddr, Claim(ip="", owner=g.titled, vmid=g.vmid, nic=n.key,
                                               mac=n.hwaddr, node=g.node))
    return out


def host_claims(node: str, addresses) -> list[Claim]:
    """This host's own addresses [(ip, mac)]: owner "host <node>"."""
    return [Claim(ip=ip, owner=f"host {node}", mac=mac, node=node, kind="host") for ip, mac in addresses]


def node_claims(nodes, this_node: str) -> list[Claim]:
    return [Claim(ip=ip, owner=f"host {name}", node=name, kind="node")
            for name, ip in nodes if name != this_node]


class Owners:
    """Claims indexed by address and by MAC."""

    def __init__(self, claims=(), macs: dict | None = None):
        self.by_ip: dict[str, list[Claim]] = {}
        for c in claims:
            lst = self.by_ip.setdefault(c.ip, [])
            if c not in lst:
                lst.append(c)
        self.by_mac = dict(macs or {})

    def attribute(self, ip: str, mac: str | None, macs_for_ip) -> dict:
        """Owner and flags for one (ip, mac) answer; macs_for_ip: every MAC heard for ip."""
        claims = self.by_ip.get(ip, [])
        flags = []
        if len(set(macs_for_ip)) > 1:
            flags.append(DUP)
        mac_owner = self.by_mac.get(mac) if mac else None
        owner_by = None
        if claims:
            owner_by = "address"
            same = [c for c in claims if c.mac == mac]
            shown = same or claims
            known = {c.mac for c in claims if c.mac}
            if mac and known and mac not in known:
                flags.append(MISMATCH)
        elif mac_owner is not None:
            owner_by, shown = "mac", [mac_owner]
        else:
            shown = []
            if mac:
                flags.append(UNCLAIMED)
        owners = list(dict.fromkeys(c.owner for c in shown))
        vmids = [c.vmid for c in shown if c.vmid is not None]
        stranger = None
        if MISMATCH in flags and mac_owner is not None and mac_owner.owner not in owners:
            stranger = mac_owner.owner
        return {"owner": ", ".join(owners) or None, "owner_vmid": vmids[0] if vmids else None,
                "owner_by": owner_by, "mac_owner": stranger, "flags": flags}

"""`locate`: who answers for an address, where each answer is plugged in, who leased it, whose it is. Pure.

The command (cli/locate.py) probes the address from the right bridge and VLAN
and hands over what it heard; this module decides:
- the owner by config: a guest NIC with the static address (this node's guests
  first), else this host, else another cluster node;
- where to probe: the owner guest's bridge and VLAN, else the bridge whose
  subnet holds the address (this host's addresses, then the guests' subnets);
- where each answering MAC sits, from the bridge's forwarding database
  (net/fdb.py): a guest port (`guest`, with its VMID and NIC), any other port
  (`uplink`), this host (`host`), or not there at all (`unknown`);
- the verdict: "owner" (only the owner answered), "foreign" (someone else did),
  "silent" (nobody did). Exit 0, 1, 0.
"""
from __future__ import annotations

import ipaddress
import re
from phoenix_hook.records import dataclass, field

from phoenix_hook.checks.leases import until_words
from phoenix_hook.net.fdb import guest_port, port_of

OWNER, FOREIGN, SILENT = "owner", "foreign", "silent"


@dataclass(frozen=True)
class Owner:
    """Someone configured to hold the address."""
    vmid: int | None
    type: str                   # "lxc" | "qemu" | "node" (this host or another cluster node)
    node: str | None
    nic: str | None             # "net0"; for a node, the interface holding it when known
    name: str | None
    mac: str | None
    bridge: str | None = None
    tag: int | None = None

    @property
    def label(self) -> str:
        if self.type == "node":
            # this host holds it on an interface of its own; another node is known by name only
            return f"this host ({self.node})" if self.nic else f"node {self.node}"
        kind = "CT" if self.type == "lxc" else "VM"
        return f"{kind} {self.vmid}" + (f" {self.name}" if self.name else "") + (f" {self.nic}" if self.nic else "")

    def to_json(self) -> dict:
        return {"vmid": self.vmid, "type": self.type, "node": self.node, "nic": self.nic,
                "name": self.name, "mac": self.mac}


def parse_address(text: str):
    """An IPv4 or IPv6 unicast host address, or ValueError with the line to show."""
    if "%" in text:
        raise ValueError(f"'{text}': write the address without a %zone and name the bridge with --bridge")
    try:
        a = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ValueError(f"'{text}' is not an IPv4 or IPv6 address; write it like 10.0.0.219 "
                         f"or fd00::219") from None
    if a.is_multicast or a.is_unspecified or a.is_loopback or \
            (a.version == 4 and a == ipaddress.IPv4Address("255.255.255.255")):
        raise ValueError(f"{a} is not a unicast host address; nothing can be located there")
    return a


def owners_of(address: str, guests, this_node: str, host_addrs=(), nodes=None) -> list[Owner]:
    """Everyone configured with address: guest NICs (not templates; this node's first, then
    by VMID), this host (host_addrs: [(ip, ifname, mac)]), other nodes (nodes: {ip: name})."""
    out = []
    for g in sorted(guests, key=lambda g: (g.node != this_node, g.vmid)):
        if g.template:
            continue
        for n in g.nics:
            if not n.error and address in (n.address, n.address6):
                out.append(Owner(vmid=g.vmid, type=g.type, node=g.node, nic=n.key, name=g.name,
                                 mac=n.hwaddr, bridge=n.bridge, tag=n.tag))
    for ip, ifname, mac in host_addrs:
        if ip == address:
            out.append(Owner(vmid=None, type="node", node=this_node, nic=ifname, name=this_node, mac=mac))
            break
    for ip, name in (nodes or {}).items():
        if ip == address and name != this_node:
            out.append(Owner(vmid=None, type="node", node=name, nic=None, name=name, mac=None))
    return out


_VLAN_DEV = re.compile(r"^(.+?)(?:v|\.)(\d{1,4})$")


def bridge_of(ifname: str, bridges) -> tuple[str, int | None] | None:
    """(bridge, VLAN) an interface of this host stands for: vmbr0 itself, PVE's
    vmbr0v20 (VLAN 20 on a non-VLAN-aware bridge), the admin's vmbr0.20."""
    if ifname in bridges and not _VLAN_DEV.match(ifname):
        return ifname, None
    m = _VLAN_DEV.match(ifname)
    if m and m.group(1) in bridges and 1 <= int(m.group(2)) <= 4094:
        return m.group(1), int(m.group(2))
    if ifname in bridges:
        return ifname, None
    return None


def where_to_probe(address: str, owner: Owner | None, host_nets=(), bridges=(), guests=()):
    """(bridge, VLAN, why) to probe from, or None when no bridge here is on the address's subnet.

    host_nets: [(ip, prefixlen, ifname)] of this host; bridges: this host's bridge names.
    """
    a = ipaddress.ip_address(address)
    if owner is not None and owner.bridge:
        return owner.bridge, owner.tag, f"the bridge of {owner.label}"
    for ip, plen, ifname in host_nets:
        try:
            net = ipaddress.ip_interface(f"{ip}/{plen}").network
        except ValueError:
            continue
        if net.version == a.version and a in net and not (net.prefixlen == net.max_prefixlen):
            hit = bridge_of(ifname, bridges)
            if hit:
                return hit[0], hit[1], f"{ifname} holds {ip}/{plen}"
    for g in sorted(guests, key=lambda g: g.vmid):
        for n in g.nics:
            if n.error or not n.bridge:
                continue
            for ip, plen in ((n.address, n.prefixlen), (n.address6, n.prefixlen6)):
                if not ip or plen is None:
                    continue
                net = ipaddress.ip_interface(f"{ip}/{plen}").network
                if net.version == a.version and a in net and net.prefixlen < net.max_prefixlen:
                    label = f"{'CT' if g.type == 'lxc' else 'VM'} {g.vmid} {n.key}"
                    return n.bridge, n.tag, f"{label} is on {net}"
    return None


@dataclass
class Answer:
    mac: str
    vendor: str | None
    port: str | None
    where: str                      # "guest" | "uplink" | "host" | "unknown"
    vmid: int | None = None
    nic: str | None = None
    lease: dict | None = None       # {"ip", "hostname", "expires", "file"}
    kind: str = "reply"             # acd.Conflict.kind: reply, announcement, request, probe, advertisement
    mac_owner: str | None = None    # the guest NIC configured with this MAC, when not the owner
    expires_epoch: int | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"mac": self.mac, "vendor": self.vendor, "port": self.port, "where": self.where,
                "vmid": self.vmid, "nic": self.nic, "lease": self.lease, "kind": self.kind,
                "mac_owner": self.mac_owner}


def place(mac: str, entries, vlan: int | None, own_macs=frozenset()) -> tuple[str | None, str, int | None, str | None]:
    """(port, where, vmid, nic) of a MAC from the bridge's forwarding database."""
    e = port_of(entries or [], mac, vlan)
    if mac in own_macs or (e is not None and e.permanent):
        return (e.port if e else None), "host", None, None
    if e is None:
        return None, "unknown", None, None
    g = guest_port(e.port)
    if g is not None:
        return e.port, "guest", g[0], g[1]
    return e.port, "uplink", None, None


def lease_for(mac: str, address: str, leases) -> object | None:
    """The active lease that explains this MAC: its lease of this address, else its newest."""
    mine = [x for x in leases if x.mac == mac]
    same = [x for x in mine if x.ip == address]
    pick = same or sorted(mine, key=lambda x: (x.expires is None, x.expires or 0))[-1:]
    return pick[0] if pick else None


def lease_json(lease) -> dict | None:
    if lease is None:
        return None
    j = lease.to_json()
    return {"ip": j["ip"], "hostname": j["hostname"], "expires": j["expires"], "file": j["file"]}


def is_owners(owner: Owner | None, a: Answer, answers) -> bool:
    """Is this answer the owner itself? By MAC; for this host, its own answer; for another
    node, whose MAC the configs do not know, a single answer is taken as the node."""
    if owner is None:
        return False
    if owner.mac:
        return a.mac == owner.mac
    if owner.type == "node" and owner.nic is not None:     # this host
        return a.where == "host"
    return len(answers) == 1


def verdict(owner: Owner | None, answers) -> str:
    if not answers:
        return SILENT
    return OWNER if all(is_owners(owner, a, answers) for a in answers) else FOREIGN


def exit_code(v: str, lost: int = 0) -> int:
    """0 owner or silent, 1 foreign; 3 (could not check) when frames were lost and no foreign
    answer was seen: the lost frames may have held one (issue 8: lost frames are never silence)."""
    if v == FOREIGN:
        return 1
    return 3 if lost else 0


def to_json(address: str, owner: Owner | None, answers, v: str, **extra) -> dict:
    return {"address": address, "owner": owner.to_json() if owner else None,
            "answers": [a.to_json() for a in answers], "verdict": v, **extra}


def text_lines(address: str, owner: Owner | None, answers, *, now: float, guest_label=lambda vmid: None,
               iface: str = "", vlan: int | None = None, window_ms: int = 0) -> list[str]:
    """One line per answer an admin can act on; one line when nobody answered."""
    if owner is None:
        belongs = "no guest or node is configured with it"
    else:
        belongs = f"the address belongs to {owner.label}" + (
            f" on node {owner.node}" if owner.type != "node" and owner.node else "")
    if not answers:
        seg = f"{iface}" + (f" VLAN {vlan}" if vlan is not None else "")
        tail = f"; {belongs}" + (" (stopped, or not reachable from here)" if owner else "")
        return [f"nobody answered for {address} on {seg} within {window_ms} ms{tail}"]
    lines = []
    for a in answers:
        vendor = a.vendor or "vendor unknown"
        whose = f", the MAC of {a.mac_owner}" if a.mac_owner else ""
        if a.where == "guest":
            who = guest_label(a.vmid) or f"guest {a.vmid}"
            at = f"on {who} {a.nic} (port {a.port})"
        elif a.where == "uplink":
            at = f"behind uplink {a.port}"
        elif a.where == "host":
            at = "from this host" + (f" ({a.port})" if a.port else "")
        else:
            at = "on a port the bridge has not learned (not in its forwarding database)"
        lease = ""
        if a.lease:
            name = f" '{a.lease['hostname']}'" if a.lease["hostname"] else ""
            of = f" of {a.lease['ip']}" if a.lease["ip"] != address else ""
            lease = f", DHCP lease{of}{name} {until_words(a.expires_epoch, now)}"
        verb = "is being claimed (probed for) by" if a.kind == "probe" else "answered by"
        if is_owners(owner, a, answers):
            end = f"; that is its owner, {owner.label}"
        else:
            end = f"; {belongs}"
        lines.append(f"{address} {verb} {a.mac} ({vendor}{whose}) {at}{lease}{end}")
    return lines

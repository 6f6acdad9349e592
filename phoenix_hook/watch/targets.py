"""What the watch watches, and where each address can be heard. Pure.

Every static address (ip=, ip6=, or a VM's cloud-init ipconfigN) of every
guest of the cluster: a device may squat a stopped guest's address as well
as a running one's, and guests on other nodes share the LAN behind the
same bridge names. Templates never run and are left out, as are addresses
in `ignore` (VRRP/keepalived addresses move between MACs on purpose).

A guest's MACs are all its NICs' hwaddr: a frame from any of them is the
guest itself (also on another node, during and after a migration).
"""
from __future__ import annotations

from phoenix_hook.records import dataclass, field

from phoenix_hook.pve.guest import label_for


@dataclass(frozen=True)
class Watched:
    """One static address of one guest NIC, on its bridge and VLAN."""
    family: int                  # 4 or 6
    ip: str
    vmid: int
    type: str                    # "lxc" or "qemu"
    name: str | None
    node: str | None             # the node whose config holds the guest
    nic: str                     # "net0"
    guest_mac: str
    guest_macs: frozenset        # every NIC MAC of this guest
    bridge: str
    vlan: int | None

    @property
    def id(self) -> str:
        """The guest as prometheus-pve-exporter labels it (pve_guest_info id="lxc/951")."""
        return f"{self.type}/{self.vmid}"

    @property
    def label(self) -> str:
        return label_for(self.type, self.vmid)

    @property
    def segment(self) -> tuple[str, int | None]:
        return (self.bridge, self.vlan)

    @property
    def where(self) -> str:
        return self.bridge + (f" VLAN {self.vlan}" if self.vlan is not None else "")

    def describe(self) -> str:
        """'CT 951 (web) net0 10.0.0.151 on vmbr0 VLAN 20'"""
        name = f" ({self.name})" if self.name else ""
        return f"{self.label}{name} {self.nic} {self.ip} on {self.where}"


@dataclass(frozen=True)
class WatchSet:
    addresses: tuple[Watched, ...] = ()
    notes: tuple[str, ...] = ()          # addresses left out, and why
    mac_owners: dict = field(default_factory=dict)   # MAC -> "CT 952 (db) on node pve2"
    _index: dict = field(default_factory=dict)

    def lookup(self, bridge: str, vlan: int | None, family: int, ip: str) -> tuple[Watched, ...]:
        return self._index.get((bridge, vlan, family, ip), ())

    def ips(self, family: int) -> frozenset[str]:
        return frozenset(w.ip for w in self.addresses if w.family == family)

    @property
    def segments(self) -> frozenset:
        return frozenset(w.segment for w in self.addresses)

    @property
    def guests(self) -> int:
        return len({(w.type, w.vmid) for w in self.addresses})

    def by_id_ip(self) -> dict[tuple[str, str], Watched]:
        """(guest id, address) -> one Watched, for metrics (one row per guest address)."""
        out = {}
        for w in self.addresses:
            out.setdefault((w.id, w.ip), w)
        return out


def build(guests, ignored=lambda ip: False) -> WatchSet:
    """The watch set of these guests (the whole cluster). ignored(ip) -> True leaves an address out."""
    addresses: list[Watched] = []
    notes: list[str] = []
    owners: dict[str, str] = {}
    for g in sorted(guests, key=lambda g: (g.vmid, g.node or "")):
        for nic in g.nics:
            if nic.hwaddr:
                owners.setdefault(nic.hwaddr, g.describe())
        if g.template:
            continue
        macs = frozenset(n.hwaddr for n in g.nics if n.hwaddr)
        for nic in g.nics:
            for family, ip in ((4, nic.address), (6, nic.address6)):
                if ip is None:
                    continue                     # dhcp, manual, auto, none, unreadable
                if not nic.bridge:
                    notes.append(f"{g.describe(nic.key)}: {ip} has no bridge; not watched")
                    continue
                if ignored(ip):
                    continue
                if not nic.hwaddr:
                    notes.append(f"{g.describe(nic.key)}: {ip} has no MAC (hwaddr) in its config, so its "
                                 f"own frames could not be told apart; not watched")
                    continue
                addresses.append(Watched(family=family, ip=ip, vmid=g.vmid, type=g.type, name=g.name,
                                         node=g.node, nic=nic.key, guest_mac=nic.hwaddr, guest_macs=macs,
                                         bridge=nic.bridge, vlan=nic.tag))
    index: dict = {}
    for w in addresses:
        index.setdefault((w.bridge, w.vlan, w.family, w.ip), []).append(w)
    return WatchSet(addresses=tuple(addresses), notes=tuple(notes), mac_owners=owners,
                    _index={k: tuple(v) for k, v in index.items()})


@dataclass(frozen=True)
class Listen:
    """Where to listen, and what a frame heard there is about.

    rx maps (interface, VLAN the frame arrived with) to the (bridge, VLAN)
    segments it belongs to; send maps a segment to (interface, VLAN tag to
    put on the frame) for re-probes, or None where the host cannot send
    into it.
    """
    ifaces: tuple[str, ...] = ()
    rx: dict = field(default_factory=dict)
    send: dict = field(default_factory=dict)
    missing: tuple[str, ...] = ()           # bridges guests sit on that this host lacks (yet)
    notes: tuple[str, ...] = ()
    # segment -> (bridge, VLAN) for a VLAN-aware bridge whose own VLAN list lacks the VLAN:
    # re-probes go out through a temporary port in it (net/probeport.py), as the hook's do
    ports: dict = field(default_factory=dict)


def listen_plan(segments, links: dict, self_vlans: dict, vlan_devs: dict | None = None) -> Listen:
    """Where each (bridge, VLAN) segment is heard on this host (REFERENCE section 4).

    links: interface name -> hostnet.Link or None (no such interface);
    self_vlans: VLAN-aware bridge -> {VID: egress untagged} of the bridge
    itself, or None when unknown.
    - untagged guests: the bridge itself;
    - tag N on a traditional bridge: tagged N on the bridge, and untagged on
      PVE's vmbrXvN where it exists (re-probes go there then);
    - tag N on a VLAN-aware bridge: tagged N on the bridge (the watch holds
      it promiscuous, so every VID reaches the host: br_handle_vlan in
      net/bridge/br_vlan.c), untagged where the bridge's own entry for N is
      "Egress Untagged"; re-probes on the bridge where N is on the bridge itself,
      else through a temporary port in VLAN N (ports), plugged as PVE plugs a guest;
    - tag N where an uplink has its own VLAN device for N (an admin's eno1.N,
      vlan_devs: hostnet.vlan_devices()) and no vmbrXvN takes it: also tagged N
      on that uplink, since the kernel hands VLAN N's frames to eno1.N before
      the bridge sees them (hostnet.vlan_taps).
    """
    from phoenix_hook.net.hostnet import vlan_taps
    rx: dict = {}
    send: dict = {}
    missing: set[str] = set()
    notes: list[str] = []
    ports: dict = {}

    def hear(iface, vlan, seg):
        rx.setdefault((iface, vlan), [])
        if seg not in rx[(iface, vlan)]:
            rx[(iface, vlan)].append(seg)

    for seg in sorted(segments, key=lambda s: (s[0], s[1] if s[1] is not None else -1)):
        bridge, vlan = seg
        link = links.get(bridge)
        if link is None:
            missing.add(bridge)
            continue
        if vlan is None:
            hear(bridge, None, seg)
            send[seg] = (bridge, None)
        elif link.vlan_filtering:
            vids = self_vlans.get(bridge) or {}
            hear(bridge, vlan, seg)
            for port in vlan_taps(link, vlan_devs or {}, vlan):
                hear(port, vlan, seg)
            if vids.get(vlan):
                hear(bridge, None, seg)
            if vlan in vids:
                send[seg] = (bridge, vlan)
            else:
                send[seg] = None
                ports[seg] = (bridge, vlan)
        else:
            hear(bridge, vlan, seg)
            vname = f"{bridge}v{vlan}"
            if links.get(vname) is not None:
                hear(vname, None, seg)
                send[seg] = (vname, None)
            else:
                send[seg] = (bridge, vlan)
                for port in vlan_taps(link, vlan_devs or {}, vlan):
                    hear(port, vlan, seg)
    ifaces = tuple(sorted({iface for iface, _vlan in rx}))
    return Listen(ifaces=ifaces, rx={k: tuple(v) for k, v in rx.items()}, send=send,
                  missing=tuple(sorted(missing)), notes=tuple(notes), ports=ports)


def interfaces_to_read(segments) -> set[str]:
    """The interfaces whose state listen_plan needs: the bridges and PVE's vmbrXvN."""
    names = set()
    for bridge, vlan in segments:
        names.add(bridge)
        if vlan is not None:
            names.add(f"{bridge}v{vlan}")
    return names

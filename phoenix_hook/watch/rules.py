"""What one frame heard on a bridge means for the watched addresses. Pure.

RFC 5227 section 2.4 (ongoing detection): an ARP packet, request or reply,
whose sender IP is one of our addresses and whose sender MAC is not ours is
a conflict. Its IPv6 counterpart (RFC 4862 5.4.4: an NA for an address in
use "possibly indicates" a duplicate): a Neighbor Advertisement for the
address, or a Neighbor Solicitation sent from it, from another MAC. A probe
for the address (ARP from 0.0.0.0, RFC 5227 2.1.1; an NS from ::, RFC 4862
5.4.2) is someone about to take it: a claim.

Never an event: frames from any of the guest's own MACs (wherever the
guest runs: a migration moves it between nodes), from this host's MACs,
from MACs in `ignore_macs`; RARP (QEMU's after a live migration carries no
IP; arp.parse reads only ARP); and addresses no guest has. A frame is
judged only against guests on the segment (bridge and VLAN) it was heard
in.
"""
from __future__ import annotations

from phoenix_hook.records import dataclass

from phoenix_hook.net import arp, ndp
from phoenix_hook.watch.targets import Listen, Watched, WatchSet

CONFLICT, CLAIM, OWN = "conflict", "claim", "own"


@dataclass(frozen=True)
class Sighting:
    kind: str            # CONFLICT, CLAIM, or OWN (the guest itself spoke: not an event)
    how: str             # reply, request, announcement, probe, advertisement, solicitation
    watched: Watched
    mac: str
    iface: str

    @property
    def key(self) -> tuple:
        """One device holding one address in one segment."""
        w = self.watched
        return (w.bridge, w.vlan, w.family, w.ip, self.mac)


def read(frame: bytes, aux_vlan: int | None):
    """(family, address spoken for, kind, how, MAC, VLAN) of an ARP or ND frame, or None."""
    pkt = arp.parse(frame, aux_vlan)
    if pkt is not None:
        if pkt.sender_ip != arp.ZERO_IP:
            how = ("reply" if pkt.op == arp.ARP_REPLY else
                   "announcement" if pkt.is_announcement else "request")
            return 4, pkt.sender_ip, CONFLICT, how, pkt.sender_mac, pkt.vlan
        if pkt.is_probe:
            return 4, pkt.target_ip, CLAIM, "probe", pkt.sender_mac, pkt.vlan
        return None                  # a reply from 0.0.0.0 means nothing
    pkt6 = ndp.parse(frame, aux_vlan)
    if pkt6 is None:
        return None
    if pkt6.is_na:
        return 6, pkt6.target, CONFLICT, "advertisement", pkt6.link_mac, pkt6.vlan
    if pkt6.is_dad:
        return 6, pkt6.target, CLAIM, "probe", pkt6.link_mac, pkt6.vlan
    return 6, pkt6.ip_src, CONFLICT, "solicitation", pkt6.link_mac, pkt6.vlan


def judge(frame: bytes, aux_vlan: int | None, iface: str, listen: Listen, wset: WatchSet,
          host_macs=frozenset(), ignore_macs=frozenset()) -> list[Sighting]:
    """Every watched address this frame (heard on iface) speaks for, and how."""
    seen = read(frame, aux_vlan)
    return [] if seen is None else match(seen, iface, listen, wset, host_macs, ignore_macs)


def match(seen, iface: str, listen: Listen, wset: WatchSet, host_macs=frozenset(),
          ignore_macs=frozenset()) -> list[Sighting]:
    """judge() for a frame read() already."""
    family, ip, kind, how, mac, vlan = seen
    if mac in host_macs or mac in ignore_macs:
        return []
    out = []
    for bridge, seg_vlan in listen.rx.get((iface, vlan), ()):
        for w in wset.lookup(bridge, seg_vlan, family, ip):
            out.append(Sighting(kind=OWN if mac in w.guest_macs else kind, how=how, watched=w,
                                mac=mac, iface=iface))
    return out

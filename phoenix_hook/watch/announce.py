"""Post-start announcements: tell the LAN at once which MAC holds the guest's static addresses.

A neighbour whose cache still maps the address to a removed squatter's MAC
(the gateway, in the outage this project exists for) keeps sending the
guest's traffic there for minutes or hours; Linux guests send no
gratuitous ARP by default (arp_notify and ndisc_notify are 0) and
pve-container sends none either (REFERENCE section 10). So in post-start,
from the host:
- per static IPv4 address: RFC 5227 section 2.3 announcements, ANNOUNCE_NUM
  (2) of them ANNOUNCE_INTERVAL (2 s) apart, with the guest NIC's MAC as
  Ethernet source and ARP sender; a gratuitous ARP request updates an
  existing Linux neighbour entry even inside locktime (arp_process, is_garp);
- per static IPv6 address: up to MAX_NEIGHBOR_ADVERTISEMENT (3) unsolicited
  Neighbor Advertisements to all-nodes with the Override flag, at least
  RetransTimer (1 s) apart (RFC 4861 section 7.2.6, 10); receivers update
  an existing entry.
Sent where the hook would probe: the bridge, tagged into the guest's VLAN,
or PVE's vmbrXvN (checks.check.plan_nic). Never for dhcp/manual/auto NICs,
ignored addresses, or an address this host holds itself.
"""
from __future__ import annotations

import time
from phoenix_hook.records import dataclass

from phoenix_hook.net import arp, ndp

ANNOUNCE_NUM, ANNOUNCE_INTERVAL = 2, 2.0          # RFC 5227 section 1.1
MAX_NEIGHBOR_ADVERTISEMENT, RETRANS_TIMER = 3, 1.0  # RFC 4861 section 10


@dataclass(frozen=True)
class Announcement:
    iface: str
    vlan: int | None       # tag to put on the frame (None: untagged on iface)
    mac: str               # the guest NIC's MAC
    ip: str
    family: int


def static_addresses(guest, ignored=lambda ip: False) -> list[tuple[str, str]]:
    """(bridge, address) of every static address post-start would announce (no host facts needed)."""
    out = []
    for nic in guest.nics:
        if nic.error or not nic.hwaddr or not nic.bridge:
            continue
        for ip in (nic.address, nic.address6):
            if ip is not None and not ignored(ip):
                out.append((nic.bridge, ip))
    return out


def plan(guest, settings, facts) -> list[Announcement]:
    """What to announce, and where: the addresses the hook would probe, as the hook would send."""
    from phoenix_hook.checks.check import families, plan_nic
    from phoenix_hook.net.acd import Candidate
    out = []
    for nic in guest.nics:
        if not nic.hwaddr:
            continue
        for family in families(nic):
            planned = plan_nic(guest, nic, settings, facts, running=True, family=family)
            # via_port: a VLAN-aware bridge not in the guest's VLAN itself; the host cannot
            # send there without a temporary port (net/probeport.py), and an announcement
            # sent untagged would speak in the wrong VLAN: none is sent.
            if isinstance(planned, Candidate) and not planned.via_port:
                out.append(Announcement(iface=planned.iface, vlan=planned.vlan if planned.tagged else None,
                                        mac=nic.hwaddr, ip=planned.ip, family=family))
    return out


def schedule(anns: list[Announcement]) -> list[tuple[float, str, bytes]]:
    """(seconds from now, interface, frame), in time order."""
    out = []
    for a in anns:
        if a.family == 6:
            frame = ndp.build_advert(a.mac, a.ip, vlan=a.vlan)      # to ff02::1, Override set
            out += [(i * RETRANS_TIMER, a.iface, frame) for i in range(MAX_NEIGHBOR_ADVERTISEMENT)]
        else:
            frame = arp.build_announcement(a.mac, a.ip, vlan=a.vlan)
            out += [(i * ANNOUNCE_INTERVAL, a.iface, frame) for i in range(ANNOUNCE_NUM)]
    return sorted(out, key=lambda x: x[0])


def run(vmid: int, settings, clock=time.monotonic, sleep=time.sleep) -> list[Announcement]:
    """Read the guest, plan, and send every announcement on time. Raises on what stops it."""
    from phoenix_hook.checks.check import interfaces_needed, read_host_facts
    from phoenix_hook.net.wire import Wire
    from phoenix_hook.pve.files import FileSource
    guest = FileSource(settings.pve_root, settings.node).guest(vmid)
    facts = read_host_facts(interfaces_needed([guest]))
    anns = plan(guest, settings, facts)
    if not anns:
        return anns
    start = clock()
    with Wire({a.iface for a in anns}) as wire:
        for offset, iface, frame in schedule(anns):
            wait = start + offset - clock()
            if wait > 0:
                sleep(wait)
            wire.send(iface, frame)
    return anns

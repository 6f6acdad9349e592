"""The subnet sweep over the wire: pick the link, the sender address, drive net/scan.Sweep.

The edge of `scan`: it reads this host's links and addresses (hostnet, neigh),
sends and receives through wire.Wire on the monotonic clock, and returns who
answered. What the answers mean (owners, flags) is decided above, in
checks/answers.py; the command only renders.
"""
from __future__ import annotations

import errno
import ipaddress
import time
from phoenix_hook.records import dataclass, field

from phoenix_hook.errors import CannotCheck, UsageError
from phoenix_hook.net import scan

# arp-scan(1) --retry-send / --retry-send-interval: a full transmit queue
# (ENOBUFS, EAGAIN) is waited out, 20 times 5 ms, before the send counts as failed.
SEND_TRIES, SEND_WAIT = 20, 0.005


@dataclass(frozen=True)
class Path:
    """Where a sweep's frames go out and where their answers come back (REFERENCE section 4)."""
    link: object               # hostnet.Link to send on
    tag: int | None            # the 802.1Q tag on sent frames
    hears: tuple               # (interface, VLAN) pairs answers arrive on
    port_vlan: int | None = None   # send through a temporary port of link (a bridge) in this VLAN


def _usable(link) -> bool:
    return link is not None and link.up and not link.noarp


def choose_path(bridge: str, vlan) -> Path:
    """How to reach VLAN vlan (None: untagged) from bridge, as check.py's plan_nic decides for a guest."""
    from phoenix_hook.net import hostnet
    br = hostnet.link(bridge)
    if br is None:
        raise CannotCheck(f"bridge {bridge} does not exist on this host; name one with --bridge")
    if not br.up:
        raise CannotCheck(f"{bridge} is down (ip link set {bridge} up)")
    if br.noarp:
        raise CannotCheck(f"{bridge} has ARP turned off (NOARP)")
    if vlan is None:
        return Path(br, None, ((bridge, None),))
    taps = tuple((port, vlan) for port in hostnet.vlan_taps(br, hostnet.vlan_devices(), vlan))
    if br.vlan_filtering:
        if br.vlan_protocol != 0x8100:
            raise CannotCheck(f"{bridge} tags VLANs with 802.1ad (vlan_protocol {br.vlan_protocol:#06x}); "
                              f"phoenix-hook sweeps 802.1Q only")
        # The admin's vmbrX.N: VLAN N untagged on a device of its own.
        vdev = hostnet.link(f"{bridge}.{vlan}")
        if _usable(vdev):
            return Path(vdev, None, ((vdev.name, None),))
        vids = hostnet.bridge_self_vlans(bridge)
        if vids is None:
            raise CannotCheck(f"cannot read the VLANs of {bridge} itself (bridge -j vlan show dev {bridge} failed)")
        if vlan in vids:
            # Tagged on the bridge; answers come up untagged where N is "Egress Untagged" on it.
            return Path(br, vlan, ((bridge, None if vids[vlan] else vlan),) + taps)
        # A standard PVE bridge is not in VLAN N itself: through a port of our own (net/probeport.py).
        return Path(br, None, taps, port_vlan=vlan)
    # Traditional bridge: PVE's vmbrXvN (pve-common Network.pm) carries VLAN N untagged.
    vbr = hostnet.link(f"{bridge}v{vlan}")
    if vbr is not None:
        if not _usable(vbr):
            raise CannotCheck(f"{vbr.name} (PVE's bridge for VLAN {vlan}) is "
                              f"{'down' if not vbr.up else 'NOARP'}, so VLAN {vlan} cannot be swept")
        return Path(vbr, None, ((vbr.name, None),))
    return Path(br, vlan, ((bridge, vlan),) + taps)


def plan_sweep(link, tag, net, *, yes: bool = False, rate: float = scan.RATE, bridge: str = "vmbr0",
               vlan: int | None = None):
    """(network, sender IP or None, host addresses [(ip, ifname, mac)]) for this sweep."""
    from phoenix_hook.net import hostnet, neigh
    addrs = neigh.read_addresses()
    if addrs is None:                    # no `ip`: local addresses without prefix or MAC
        local = [(ip, None, None) for ip in sorted(hostnet.local_ipv4())]
        mine = []
    else:
        local = [(a.ip, a.ifname, a.mac) for a in addrs if a.family == 4 and not a.ip.startswith("127.")]
        # Tagged frames on the bridge belong to VLAN `tag`, the bridge's own addresses do not.
        mine = [a for a in addrs if a.family == 4 and link is not None and a.ifname == link.name and tag is None]
    if net is None:
        if not mine:
            vlan = tag if vlan is None else vlan
            where = f"{bridge} VLAN {vlan}" if vlan is not None else link.name
            raise UsageError(f"{where} has no IPv4 address to take the subnet from; name the subnet: "
                             f"phoenix-hook scan 10.0.0.0/24 --bridge {bridge}"
                             + (f" --vlan {vlan}" if vlan is not None else ""))
        net = mine[0].network
        check_size(net, yes, rate)
    # Sender IP: the link's address in the subnet, else one whose subnet overlaps it
    # (10.0.0.1/24 for 10.0.0.128/25); else none, and RFC 5227 probes from 0.0.0.0.
    inside = [a for a in mine if ipaddress.IPv4Address(a.ip) in net]
    near = [a for a in mine if a.network.overlaps(net)]
    src = (inside or near or [None])[0]
    src = src.ip if src else None
    return net, src, local


def check_size(net, yes: bool, rate: float) -> None:
    try:
        scan.check_size(net, yes, rate)
    except scan.ScanUsage as exc:
        raise UsageError(str(exc)) from None


def drive(sweep, wire, iface, frame_for, accept, progress=None, clock=time.monotonic, hears=None) -> None:
    """Run the sweep to its end: send what is due, read every answer. The only timing loop.

    hears: the (interface, VLAN) pairs answers may come from; None takes every frame to accept().
    """
    from phoenix_hook.net import arp
    from phoenix_hook.net.wire import WireError

    def listen(timeout):
        frames = wire.receive(timeout)
        for ifname, frame, vlan in frames:
            pkt = arp.parse(frame, vlan)
            if pkt is None or (hears is not None and (ifname, pkt.vlan) not in hears):
                continue
            if accept(pkt):
                sweep.answer(scan.ip_int(pkt.sender_ip), pkt.sender_mac, clock())
        return len(frames)

    now = clock()
    sweep.start(now)
    while not sweep.done(now):
        for n in sweep.due(now):
            for attempt in range(SEND_TRIES):
                try:
                    wire.send(iface, frame_for(n))
                    break
                except WireError as exc:
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN) or attempt == SEND_TRIES - 1:
                        raise
                    listen(SEND_WAIT)
        listen(max(0.0, sweep.wakeup(clock()) - clock()))
        now = clock()
        if progress:
            progress(sweep, now)
    while listen(0.0):                  # answers that came in time but were not read yet
        pass
    if progress:
        progress(sweep, now, final=True)


@dataclass
class SweepResult:
    """Who answered: ip (int) -> {mac: first heard}, and what it took."""
    net: ipaddress.IPv4Network
    link: object
    tag: int | None
    source_ip: str | None
    local: list = field(default_factory=list)        # [(ip, ifname, mac)] of this host
    in_net: list = field(default_factory=list)       # this host's addresses inside net
    answers: dict = field(default_factory=dict)
    sent: int = 0
    elapsed_ms: int = 0
    lost: int = 0              # frames the kernel dropped (receive buffer full): answers may be missing


def sweep(bridge: str, vlan, net=None, *, rate: float = scan.RATE, retries: int = scan.RETRIES,
          timeout_ms: int = scan.TIMEOUT_MS, yes: bool = False, progress_factory=None,
          warn=None) -> SweepResult:
    """Sweep net (default: the link's own subnet) from bridge / VLAN; CannotCheck when the
    wire fails, UsageError for what the admin must name."""
    from phoenix_hook.net import hostnet, probeport
    from phoenix_hook.net.wire import Wire, WireError
    path = choose_path(bridge, vlan)
    link, tag = path.link, path.tag
    if path.port_vlan is None:
        net, src, local = plan_sweep(link, tag, net, yes=yes, rate=rate, bridge=bridge, vlan=vlan)
    else:                               # nothing of the host's is in that VLAN: the subnet must be named
        net, src, local = plan_sweep(None, None, net, yes=yes, rate=rate, bridge=bridge, vlan=vlan)
    own_macs = hostnet.all_macs()
    in_net = [ip for ip, _d, _m in local if ipaddress.IPv4Address(ip) in net]
    port = None
    try:
        if path.port_vlan is not None:
            try:
                port = probeport.open_port(bridge, path.port_vlan)
            except probeport.PortError as exc:
                raise CannotCheck(str(exc)) from None
            link = hostnet.link(port.peer)
            if link is None:
                raise CannotCheck(f"the temporary probe port {port.peer} vanished")
            own_macs = own_macs | {port.mac}
            path = Path(link, None, ((port.peer, None),) + path.hears)
        frame_for = scan.request_frames(link.mac, src, tag, probe_for=in_net)

        def accept(pkt):                # drive() keeps only frames from path.hears
            return scan.is_answer(pkt, link.mac, pkt.vlan, own_macs)

        if not link.carrier and warn:
            warn(f"no port of {link.name} is up, nobody can answer")
        sw = scan.Sweep(scan.targets(net), rate=rate, retries=retries, timeout=timeout_ms / 1000)
        progress = progress_factory(net, link, sw) if progress_factory else None
        t0 = time.monotonic()
        try:
            with Wire([link.name] + [i for i, _v in path.hears]) as wire:
                drive(sw, wire, link.name, frame_for, accept, progress, hears=set(path.hears))
                lost = sum(wire.dropped().values())
        except WireError as exc:
            raise CannotCheck(exc.strerror or str(exc)) from None
        if port is not None and port.broken():
            raise CannotCheck(port.broken())
    finally:
        if port is not None:
            port.close()
    return SweepResult(net=net, link=link, tag=tag, source_ip=src,
                       local=local, in_net=in_net, answers=sw.answers, sent=sw.sent,
                       elapsed_ms=round((time.monotonic() - t0) * 1000), lost=lost)

#!/usr/bin/env python3
"""A small user-space ARP host for the namespace lab: what the lab kernel cannot play.

The kernel here has no 802.1Q devices and no netem (REFERENCE section 9), so
tagged hosts, slow hosts, lossy hosts, hosts that probe back and a source of
garbage frames are this script on an AF_PACKET socket (phoenix_hook.net.wire)
inside a lab namespace. Never run it on a machine's own interfaces: it
answers ARP for any address it is given.

    responder.py --iface eth0 --ip 10.0.0.151 [--ip ...] [--ip6 fd00::151 ...] [--mac MAC]
                 [--vlan N] [--delay-ms N] [--drop PCT] [--seed N]
                 [--mode reply|garp|probe|flood|announce] [--count N] [--log FILE]

Modes (what it does when it sees an ARP request for one of its --ip, in its
VLAN: only frames tagged --vlan N, or only untagged frames without --vlan):
  reply  a unicast is-at reply from --mac (RFC 826), also to RFC 5227 probes
  garp   a gratuitous ARP request (RFC 5227 2.3 announcement) instead
  probe  on a probe for the address, its own RFC 5227 probe for it from
         --mac: "another host is claiming it at the same time" (2.1.1)
  flood  no answers: a bounded stream (~2000 frames/s) of malformed or
         irrelevant frames until killed; never a well-formed frame whose
         sender or target address is one of --ip
  announce  unprompted: a gratuitous ARP for each --ip every --delay-ms
         (default 20 ms), as a chatty host does; in its VLAN with --vlan
--ip6 (repeatable; --ip may then be left out, except for flood) makes it an
IPv6 holder of that address too, the same modes over Neighbor Discovery: on
a DAD probe or other Neighbor Solicitation for it, reply and garp send the
Neighbor Advertisement a Linux kernel sends (to all-nodes, RFC 4862 5.4.3),
probe its own DAD probe (only on a DAD probe), announce an unprompted NA
every --delay-ms; in its VLAN as for ARP.
--delay-ms delays each answer (without blocking the receive loop), --drop
ignores that percentage of requests (random, --seed for a repeatable run),
--count stops after that many frames were sent (0: no limit), --log appends
one line per relevant frame seen and per frame sent (tests read it).
Prints one line containing "ready" once the socket is bound; exits 0 on
SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import heapq
import os
import random
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from phoenix_hook.net import arp, ndp  # noqa: E402
from phoenix_hook.net.wire import Wire, WireError  # noqa: E402

FLOOD_RATE = 2000          # frames per second, upper bound
FLOOD_BURST = 20


def iface_mac(iface: str) -> str:
    with open(f"/sys/class/net/{iface}/address") as f:
        return f.read().strip().lower()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="lab ARP responder (run only inside a lab namespace)")
    p.add_argument("--iface", required=True)
    p.add_argument("--ip", action="append", default=[], help="address to answer for (repeatable)")
    p.add_argument("--ip6", action="append", default=[], help="IPv6 address to answer for (repeatable)")
    p.add_argument("--mac", help="MAC to answer from (default: the interface's)")
    p.add_argument("--vlan", type=int, help="only frames tagged with this VID; answers tagged too")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--drop", type=float, default=0.0, help="percent of requests ignored")
    p.add_argument("--seed", type=int)
    p.add_argument("--mode", choices=("reply", "garp", "probe", "flood", "announce"), default="reply")
    p.add_argument("--count", type=int, default=0, help="stop after N frames sent (0: no limit)")
    p.add_argument("--log", help="append one line per relevant frame seen or sent")
    a = p.parse_args(argv)
    if not a.ip and not a.ip6:
        p.error("give at least one --ip or --ip6")
    if a.mode == "flood" and not a.ip:
        p.error("--mode flood needs --ip")
    for ip in a.ip:
        arp.ip_to_bytes(ip)                     # ValueError names a bad address
    a.ip6 = [ndp.ip6_to_str(ndp.ip6_to_bytes(ip)) for ip in a.ip6]   # compressed, as ndp.parse gives them
    if a.vlan is not None and not 1 <= a.vlan <= 4094:
        p.error(f"--vlan {a.vlan} outside 1..4094")
    if not 0 <= a.drop <= 100:
        p.error("--drop is a percentage, 0..100")
    return a


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1) if path else None

    def __call__(self, line: str) -> None:
        if self.f:
            self.f.write(f"{time.monotonic():.6f} {line}\n")


def answer_for(pkt: arp.ArpPacket, a, mac: str) -> bytes | None:
    """The frame this host sends in reply to pkt, or None."""
    if pkt.op != arp.ARP_REQUEST or pkt.target_ip not in a.ip or pkt.sender_mac == mac:
        return None
    if a.mode == "reply":
        return arp.build_reply(mac, pkt.target_ip, pkt.sender_mac, pkt.sender_ip, vlan=a.vlan)
    if a.mode == "garp":
        return arp.build_announcement(mac, pkt.target_ip, vlan=a.vlan)
    if a.mode == "probe" and pkt.is_probe:
        return arp.build_probe(mac, pkt.target_ip, vlan=a.vlan)
    return None


def answer6_for(pkt: ndp.NdpPacket, a, mac: str) -> bytes | None:
    """The frame this host sends in reply to a Neighbor Solicitation, or None."""
    if not pkt.is_ns or pkt.target not in a.ip6 or pkt.eth_src == mac:
        return None
    if a.mode in ("reply", "garp"):
        return ndp.build_advert(mac, pkt.target, vlan=a.vlan)
    if a.mode == "probe" and pkt.is_dad:
        return ndp.build_dad_probe(mac, pkt.target, vlan=a.vlan)
    return None


def serve(a, wire: Wire, mac: str, rng: random.Random, log: Log) -> None:
    pending: list[tuple[float, int, bytes]] = []      # (due, seq, frame)
    seq = sent = 0
    while True:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _due, _s, frame = heapq.heappop(pending)
            wire.send(a.iface, frame)
            sent += 1
            log(f"sent {describe(frame)}")
            if a.count and sent >= a.count:
                return
        timeout = 0.5 if not pending else max(0.0, pending[0][0] - time.monotonic())
        for _ifname, frame, aux_vlan in wire.receive(timeout):
            pkt = arp.parse(frame, aux_vlan)
            if pkt is None:
                pkt6 = ndp.parse(frame, aux_vlan) if a.ip6 else None
                if pkt6 is None or not pkt6.is_ns or pkt6.target not in a.ip6:
                    continue
                log(f"seen {'dad' if pkt6.is_dad else 'ns'} for {pkt6.target} "
                    f"from {pkt6.eth_src} vlan={pkt6.vlan}")
                if pkt6.vlan != a.vlan:
                    continue
                target, out = pkt6.target, answer6_for(pkt6, a, mac)
            else:
                if pkt.target_ip not in a.ip:
                    continue
                log(f"seen {'probe' if pkt.is_probe else 'op%d' % pkt.op} for {pkt.target_ip} "
                    f"from {pkt.sender_mac} vlan={pkt.vlan}")
                if pkt.vlan != a.vlan:                  # not our VLAN: we never hear it
                    continue
                target, out = pkt.target_ip, answer_for(pkt, a, mac)
            if out is None:
                continue
            if a.drop and rng.random() * 100 < a.drop:
                log(f"dropped request for {target}")
                continue
            seq += 1
            heapq.heappush(pending, (time.monotonic() + a.delay_ms / 1000.0, seq, out))


def describe(frame: bytes) -> str:
    pkt = arp.parse(frame)
    if pkt is None:
        p6 = ndp.parse(frame)
        if p6 is not None:
            kind = "dad" if p6.is_dad else "na" if p6.is_na else "ns"
            return f"{kind} {p6.target} from {p6.eth_src} vlan={p6.vlan}"
        return f"{len(frame)} bytes"
    kind = "probe" if pkt.is_probe else "announcement" if pkt.is_announcement else "op%d" % pkt.op
    return f"{kind} {pkt.sender_ip}->{pkt.target_ip} from {pkt.sender_mac} vlan={pkt.vlan}"


# -- flood -----------------------------------------------------------------
def _other_ip(rng: random.Random, avoid) -> str:
    while True:
        ip = "10.%d.%d.%d" % (rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
        if ip not in avoid:
            return ip


def flood_frames(rng: random.Random, mac: str, ips):
    """Endless malformed/irrelevant frames. Malformed ones may carry an address
    of ips (a parser that is lax would take them for a claim); well-formed
    ones never do."""
    bcast = arp.mac_to_bytes(arp.BROADCAST)
    src = arp.mac_to_bytes(mac)
    hdr = struct.Struct("!HHBBH6s4s6s4s")

    def arp_body(htype=1, ptype=arp.ETH_P_IP, hlen=6, plen=4, op=arp.ARP_REPLY, sip=None):
        sip = sip or rng.choice(ips)
        return hdr.pack(htype, ptype, hlen, plen, op, src, arp.ip_to_bytes(sip),
                        bcast, arp.ip_to_bytes(_other_ip(rng, ips)))

    def eth(ethertype, payload, dst=bcast, tag=None):
        t = struct.pack("!HH", arp.ETH_P_8021Q, tag) if tag is not None else b""
        return (dst + src + t + struct.pack("!H", ethertype) + payload).ljust(14, b"\0")

    kinds = [
        # a claim cut short: the ARP header ends inside the sender/target fields
        lambda: eth(arp.ETH_P_ARP, arp_body()[:rng.randrange(0, 18)]),
        lambda: eth(arp.ETH_P_ARP, arp_body(htype=rng.choice([0, 6, 0x1234]))),      # not Ethernet
        lambda: eth(arp.ETH_P_ARP, arp_body(ptype=rng.choice([0x86DD, 0, 0x0806]))),  # not IPv4
        lambda: eth(arp.ETH_P_ARP, hdr.pack(1, arp.ETH_P_IP, 6, 16, 2, src, b"\0" * 4, bcast, b"\0" * 4)
                    + os.urandom(24)),                                                 # plen 16
        lambda: eth(arp.ETH_P_ARP, arp_body(hlen=rng.choice([0, 8, 16]))),
        lambda: eth(arp.ETH_P_ARP, arp_body(op=rng.choice([0, 3, 4, 8, 9, 0xFFFF]))),  # RARP, InARP, junk
        lambda: eth(arp.ETH_P_IP, arp_body()),                                          # ARP body, IP type
        lambda: eth(rng.choice([0x86DD, 0x88CC, 0x9000, 0x0842]), os.urandom(rng.randrange(0, 80))),
        # tagged garbage: a tag and a truncated ARP, a QinQ stack around a claim, random payload
        lambda: eth(arp.ETH_P_ARP, arp_body()[:rng.randrange(0, 18)], tag=rng.randrange(1, 4095)),
        lambda: eth(arp.ETH_P_8021Q, arp_body(), tag=rng.randrange(1, 4095)),
        lambda: eth(rng.randrange(0x0600, 0x10000), os.urandom(rng.randrange(0, 60)), tag=rng.randrange(0, 4096)),
        lambda: bcast + os.urandom(rng.randrange(8, 120)),                              # random bytes
        # well-formed ARP about other addresses only
        lambda: arp.build_request(mac, _other_ip(rng, ips), _other_ip(rng, ips)),
        lambda: arp.build_probe(mac, _other_ip(rng, ips)),
        lambda: arp.build_announcement(mac, _other_ip(rng, ips), vlan=rng.choice([None, 20, 30])),
        lambda: arp.build_reply(mac, _other_ip(rng, ips), arp.BROADCAST, _other_ip(rng, ips)),
    ]
    while True:
        frame = rng.choice(kinds)()
        if claims(frame, ips):
            continue
        yield frame


def claims(frame: bytes, ips) -> bool:
    """Would a correct parser read this frame as ARP about one of ips, as sent
    or zero-padded to the Ethernet minimum by some device on the way?"""
    for f in (frame, frame.ljust(arp.MIN_FRAME, b"\0")):
        pkt = arp.parse(f)
        if pkt is not None and (pkt.sender_ip in ips or pkt.target_ip in ips):
            return True
    return False


def flood(a, wire: Wire, mac: str, rng: random.Random, log: Log) -> None:
    frames = flood_frames(rng, mac, a.ip)
    sent = 0
    start = time.monotonic()
    while True:
        for _ in range(FLOOD_BURST):
            try:
                wire.send(a.iface, next(frames))
            except WireError:
                pass                         # ENOBUFS on a full queue: skip, keep the rate
            sent += 1
            if a.count and sent >= a.count:
                log(f"flood sent {sent}")
                return
        # Pace to FLOOD_RATE; receive() doubles as a sleep that drains our queue.
        ahead = start + sent / FLOOD_RATE - time.monotonic()
        wire.receive(max(0.0, ahead))
        if sent % 200 < FLOOD_BURST:
            log(f"flood sent {sent}")


def announce(a, wire: Wire, mac: str, log: Log) -> None:
    """Announce every address (RFC 5227 2.3) every delay_ms, asked or not."""
    interval = (a.delay_ms or 20) / 1000.0
    sent = 0
    while True:
        frames = [arp.build_announcement(mac, ip, vlan=a.vlan) for ip in a.ip]
        frames += [ndp.build_advert(mac, ip, vlan=a.vlan) for ip in a.ip6]
        for frame in frames:
            wire.send(a.iface, frame)
            sent += 1
            log(f"sent {describe(frame)}")
            if a.count and sent >= a.count:
                return
        wire.receive(interval)               # a sleep that drains our queue


def main(argv=None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    mac = (a.mac or iface_mac(a.iface)).lower()
    arp.mac_to_bytes(mac)
    rng = random.Random(a.seed)
    log = Log(a.log)
    try:
        with Wire([a.iface]) as wire:
            print(f"responder ready: mode={a.mode} iface={a.iface} mac={mac} vlan={a.vlan} "
                  f"ips={','.join(a.ip + a.ip6)}", flush=True)
            if a.mode == "flood":
                flood(a, wire, mac, rng, log)
            elif a.mode == "announce":
                announce(a, wire, mac, log)
            else:
                serve(a, wire, mac, rng, log)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

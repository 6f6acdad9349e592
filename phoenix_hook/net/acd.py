"""RFC 5227 Address Conflict Detection, the decision part. Pure; time is a parameter.

A ProbeRun is a small state machine in the manner of python-hyper/h11:
the caller tells it the time and the frames it saw, and asks it which
frames to send and when to wake up. It never touches a socket or a clock.
"""
from __future__ import annotations

import random
from phoenix_hook.records import dataclass, field, replace

from phoenix_hook.net import arp, ndp


@dataclass(frozen=True)
class Schedule:
    """Probe timings in seconds (RFC 5227 section 1.1 constants)."""
    probe_wait: float      # first probe after a random 0..probe_wait
    probe_num: int
    probe_min: float       # between probes: random probe_min..probe_max
    probe_max: float
    announce_wait: float   # keep listening this long after the last probe

    @property
    def longest(self) -> float:
        return self.probe_wait + (self.probe_num - 1) * self.probe_max + self.announce_wait


# RFC 5227 section 1.1: PROBE_WAIT 1 s, PROBE_NUM 3, PROBE_MIN 1 s,
# PROBE_MAX 2 s, ANNOUNCE_WAIT 2 s.
RFC5227 = Schedule(probe_wait=1.0, probe_num=3, probe_min=1.0, probe_max=2.0, announce_wait=2.0)


def schedule_for(timeout: int | str) -> Schedule:
    """The schedule for probe_timeout_ms, scaled from one timeout T as n-acd does.

    nettools/n-acd src/n-acd.c: PROBE_WAIT = PROBE_MIN = T/9, PROBE_MAX =
    T/3, ANNOUNCE_WAIT = 2T/9, so probing lasts 4T/9..T (REFERENCE section 6).
    "rfc5227" gives the RFC's own constants.
    """
    if timeout == "rfc5227":
        return RFC5227
    t = int(timeout) / 1000.0
    return Schedule(probe_wait=t / 9, probe_num=3, probe_min=t / 9, probe_max=t / 3,
                    announce_wait=2 * t / 9)


def send_offsets(s: Schedule, rand=random.random) -> tuple[list[float], float]:
    """(offsets of each probe from start, offset where listening ends)."""
    t = rand() * s.probe_wait
    offsets = [t]
    for _ in range(s.probe_num - 1):
        t += s.probe_min + rand() * (s.probe_max - s.probe_min)
        offsets.append(t)
    return offsets, t + s.announce_wait


@dataclass(frozen=True)
class Candidate:
    """One address to probe, and where: the guest's NIC seen from the host bridge."""
    key: str                   # e.g. "net0"
    ip: str
    iface: str                 # the host interface frames go out on (vmbr0, vmbr0v20)
    src_mac: str               # that interface's MAC (REFERENCE section 2)
    vlan: int | None = None    # VLAN the guest lives in
    tagged: bool = False       # send 802.1Q-tagged frames on iface
    guest_mac: str | None = None
    guest_running: bool = False  # the guest itself may answer from guest_mac
    rx_untagged: bool = False    # answers reach iface without a tag (VLAN-aware bridge,
                                 # the VLAN is "Egress Untagged" on the bridge itself)
    family: int = 4              # 4: RFC 5227 ARP probes; 6: RFC 4862 DAD (ip is IPv6)
    via_port: bool = False       # sent untagged through a temporary port of the bridge iface
                                 # in VLAN vlan (net/probeport.py); iface and src_mac become
                                 # that port's host end once it exists
    also_hear: tuple = ()        # more (interface, VLAN) where its answers arrive: an uplink
                                 # whose own VLAN device takes them off the bridge (hostnet.vlan_taps)

    @property
    def rx_vlan(self) -> int | None:
        """The VLAN its answers arrive with on iface (None on vmbrXvN devices)."""
        return self.vlan if self.tagged and not self.rx_untagged else None

    @property
    def hears(self) -> tuple:
        """Every (interface, VLAN) its answers may arrive on."""
        return ((self.iface, self.rx_vlan),) + tuple(self.also_hear)

    def probe_frame(self) -> bytes:
        vlan = self.vlan if self.tagged else None
        if self.family == 6:
            return ndp.build_dad_probe(self.src_mac, self.ip, vlan)
        return arp.build_probe(self.src_mac, self.ip, vlan)


@dataclass(frozen=True)
class Conflict:
    key: str
    ip: str
    mac: str
    kind: str         # "reply", "request", "announcement", "probe", "same-mac"; IPv6: "advertisement"
    vlan: int | None
    at: float         # seconds after the run started
    family: int = 4

    @property
    def detail(self) -> str:
        if self.family == 6:
            return {
                "advertisement": "advertised this address (IPv6 Neighbor Advertisement)",
                "request": "sent a Neighbor Solicitation from this address",
                "probe": "is probing for this address right now (IPv6 DAD)",
                "same-mac": "another copy of this guest (same MAC) is up",
            }[self.kind]
        return {
            "reply": "answered our probe",
            "request": "sent an ARP request from this address",
            "announcement": "announced this address (gratuitous ARP)",
            "probe": "is probing for this address right now",
            "same-mac": "another copy of this guest (same MAC) is up",
        }[self.kind]


def judge(pkt, iface: str, cand: Candidate, own_macs) -> Conflict | None:
    """Is this packet (arp.ArpPacket or ndp.NdpPacket), seen on iface, a conflict for cand?

    An ARP packet speaks only to an IPv4 candidate, an NS/NA only to an
    IPv6 one (judge_ndp).
    """
    if cand.family == 6:
        return judge_ndp(pkt, iface, cand, own_macs) if isinstance(pkt, ndp.NdpPacket) else None
    if not isinstance(pkt, arp.ArpPacket):
        return None
    return judge_arp(pkt, iface, cand, own_macs)


def judge_arp(pkt: arp.ArpPacket, iface: str, cand: Candidate, own_macs) -> Conflict | None:
    """Is this ARP packet, seen on iface, a conflict for cand? RFC 5227 section 2.1.1.

    - any ARP packet whose sender IP is the candidate, from a MAC not ours;
    - an ARP probe (sender IP 0.0.0.0) for the candidate from another MAC:
      someone else wants it at the same time.
    Frames on another interface or in another VLAN (cand.hears) say nothing
    about this address. A running guest answering from its own MAC is itself, not a
    conflict; at pre-start it cannot be up, so its MAC then means a copy.
    """
    if (iface, pkt.vlan) not in cand.hears:
        return None
    if pkt.sender_mac in own_macs or pkt.sender_mac == cand.src_mac:
        return None
    if pkt.sender_ip == cand.ip:
        if pkt.sender_mac == cand.guest_mac:
            if cand.guest_running:
                return None
            kind = "same-mac"
        elif pkt.op == arp.ARP_REPLY:
            kind = "reply"
        elif pkt.is_announcement:
            kind = "announcement"
        else:
            kind = "request"
    elif pkt.is_probe and pkt.target_ip == cand.ip:
        if cand.guest_running and pkt.sender_mac == cand.guest_mac:
            return None
        kind = "probe"
    else:
        return None
    return Conflict(key=cand.key, ip=cand.ip, mac=pkt.sender_mac, kind=kind, vlan=cand.vlan, at=0.0)


def judge_ndp(pkt: ndp.NdpPacket, iface: str, cand: Candidate, own_macs) -> Conflict | None:
    """Is this NS/NA, seen on iface, a conflict for the IPv6 cand? RFC 4862 5.4.3, 5.4.4.

    - an NA whose target is the candidate: a node holds it (5.4.4);
    - a DAD NS (source ::) for the candidate from another node: it is
      claiming the address at the same time (5.4.3);
    - an NS whose IPv6 source is the candidate: the sender uses the address,
      as an ARP request from it does in RFC 5227 2.1.1.
    An NS from a real address for the candidate is someone resolving it:
    not a claim. The MAC is the link-layer option, else the Ethernet
    source; frames from our own MACs, other interfaces and other VLANs say
    nothing, and a running guest answering from its own MAC is itself.
    """
    if (iface, pkt.vlan) not in cand.hears:
        return None
    mac = pkt.link_mac
    if pkt.eth_src in own_macs or mac in own_macs or cand.src_mac in (pkt.eth_src, mac):
        return None
    if pkt.is_na and pkt.target == cand.ip:
        kind = "advertisement"
    elif pkt.is_dad and pkt.target == cand.ip:
        kind = "probe"
    elif pkt.is_ns and pkt.ip_src == cand.ip:
        kind = "request"
    else:
        return None
    if mac == cand.guest_mac:
        if cand.guest_running:
            return None
        if kind != "probe":
            kind = "same-mac"
    return Conflict(key=cand.key, ip=cand.ip, mac=mac, kind=kind, vlan=cand.vlan, at=0.0, family=6)


@dataclass
class ProbeRun:
    """Probe a set of candidates at once, with one schedule.

    stop_on_first: end the run at the first conflict (the hook's mode: one
    conflict already decides the start). Otherwise a candidate stops being
    probed at its first conflict, and the run ends when all have one or
    the listening window closes.
    collect: probe and listen for the whole window and keep every MAC that
    answers (`locate`: who all holds the address, not only whether anyone does).
    """
    candidates: list[Candidate]
    schedule: Schedule
    own_macs: frozenset = frozenset()
    stop_on_first: bool = True
    collect: bool = False
    rand: object = random.random
    conflicts: dict = field(default_factory=dict)   # key -> [Conflict]
    sent: dict = field(default_factory=dict)        # key -> probes sent
    dropped: dict = field(default_factory=dict)     # iface -> frames the kernel dropped
    _start: float | None = None
    _offsets: list = field(default_factory=list)
    _end: float = 0.0
    _next: int = 0

    def start(self, now: float) -> None:
        self._start = now
        self._offsets, self._end = send_offsets(self.schedule, self.rand)

    @property
    def window(self) -> float:
        return self._end

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """Frames to send now: (iface, frame) for every candidate still open."""
        out = []
        # Compare absolute times, exactly as wakeup() computes them: with
        # now - start >= offset, a clock that wakes at wakeup() can be 1 ulp
        # short ((start + off) - start < off) and spin without sending.
        while self._next < len(self._offsets) and now >= self._start + self._offsets[self._next]:
            self._next += 1
            if self._next == len(self._offsets) and now - self._start > self._offsets[-1] + 1e-6:
                # The last probe went out late (a process that stalled: a starved CPU, a
                # mass start): the listening after it is never cut short of ANNOUNCE_WAIT.
                self._end = max(self._end, (now - self._start) + self.schedule.announce_wait)
            for c in self.candidates:
                if c.key not in self.conflicts or self.collect:
                    out.append((c.iface, c.probe_frame()))
                    self.sent[c.key] = self.sent.get(c.key, 0) + 1
        return out

    def wakeup(self) -> float:
        """Absolute time of the next thing to do (a send or the end of the window)."""
        if self._next < len(self._offsets):
            return self._start + self._offsets[self._next]
        return self._start + self._end

    def feed(self, iface: str, pkt, now: float) -> list[Conflict]:
        """Judge one parsed frame (arp.ArpPacket or ndp.NdpPacket) for every candidate."""
        found = []
        for c in self.candidates:
            hit = judge(pkt, iface, c, self.own_macs)
            if hit is None:
                continue
            hit = replace(hit, at=now - self._start)
            seen = self.conflicts.setdefault(c.key, [])
            if all(h.mac != hit.mac for h in seen):
                seen.append(hit)
                found.append(hit)
        return found

    def note_dropped(self, counts: dict) -> None:
        """The wire's count of frames lost per interface (wire.Wire.dropped)."""
        self.dropped = {i: n for i, n in counts.items() if n}

    def unproven(self, key: str) -> int:
        """Frames lost on the candidate's interface while no conflict was seen for it:
        an answer may have been among them, so its silence proves nothing (0: proven)."""
        if key in self.conflicts:
            return 0
        cand = next(c for c in self.candidates if c.key == key)
        return sum(self.dropped.get(iface, 0) for iface in dict.fromkeys(i for i, _v in cand.hears))

    def done(self, now: float) -> bool:
        # Silence counts only once every probe went out and the window after the last closed.
        quiet_over = self._next >= len(self._offsets) and now >= self._start + self._end
        if self.collect:
            return quiet_over
        if self.conflicts and self.stop_on_first:
            return True
        if len(self.conflicts) == len(self.candidates):
            return True
        return quiet_over

"""The subnet survey, decided: which addresses to ask, when to ask again, what the answers mean. Pure.

No sockets and no clock: `now` is always a parameter (net/sweep.py drives
this over wire.py with time.monotonic). The shape follows arp-scan(1):
one ARP request per address, a per-host timeout, a backoff factor for each
further attempt, and retries only for hosts that have not answered. Unlike
arp-scan the first pass goes out at once (bounded by --rate) and every
reply is kept, so two MACs answering for one address both show.

The sweep reports who answered (ip -> MACs); who owns each answer and its
flags (DUP, MAC-MISMATCH, UNCLAIMED) are decided above it, in checks/answers.py.
"""
from __future__ import annotations

import ipaddress
from collections import deque

from phoenix_hook.net import arp

# Defaults, and why (arp-scan's are --retry=2 attempts, --timeout=500 ms,
# --backoff=1.5, --bandwidth=256000 bit/s, i.e. ~530 requests/s):
RATE = 2000          # requests/s: a /24 in 0.13 s, ~1.3 Mbit/s with Ethernet framing
RETRIES = 2          # attempts after the first: 3 in all, one more than arp-scan
TIMEOUT_MS = 100     # first wait; a LAN answers ARP in well under 10 ms, and a
                     # late answer to any earlier attempt still counts
BACKOFF = 1.5        # arp-scan's: each further wait is 1.5 times the previous
WIDEST_WITHOUT_YES = 16
WIDEST = 12          # even with --yes: a /12 is 1M addresses, ~9 min a pass at RATE


class ScanUsage(ValueError):
    """A CIDR or option the admin has to fix; str() is the line to show."""


# -- what to sweep --------------------------------------------------------------
def parse_cidr(text: str) -> ipaddress.IPv4Network:
    """'10.0.0.0/24' (host bits allowed: 10.0.0.7/24 means its subnet) or one address."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ScanUsage(f"'{text}' is not an IPv4 network; write it like 10.0.0.0/24") from None
    if net.version != 4:
        raise ScanUsage(f"{text} is IPv6: an ARP sweep is IPv4 only "
                        f"(phoenix-hook neigh shows IPv6 neighbours)")
    return net


def check_size(net: ipaddress.IPv4Network, yes: bool, rate: float = RATE) -> None:
    """Refuse prefixes wider than /16 unless --yes; never wider than /12."""
    if net.prefixlen < WIDEST:
        raise ScanUsage(f"{net} is too large to sweep by ARP ({net.num_addresses} addresses); "
                        f"scan it in parts of /{WIDEST} or smaller")
    if net.prefixlen < WIDEST_WITHOUT_YES and not yes:
        minutes = net.num_addresses / rate / 60
        raise ScanUsage(f"{net} has {net.num_addresses} addresses (about {minutes:.0f} min a pass "
                        f"at {rate:g} requests/s); add --yes to sweep it anyway")


def targets(net: ipaddress.IPv4Network) -> range:
    """Every address of the network as integers, network and broadcast included:
    a host with another prefix may hold them (arp-scan sweeps them too)."""
    first = int(net.network_address)
    return range(first, first + net.num_addresses)


def ip_int(ip: str) -> int:
    return int.from_bytes(arp.ip_to_bytes(ip), "big")


def ip_str(n: int) -> str:
    return arp.ip_to_str(n.to_bytes(4, "big"))


def request_frames(src_mac: str, src_ip: str | None, vlan: int | None, probe_for=frozenset()):
    """A function ip_int -> the who-has frame for it (RFC 826).

    Sender IP src_ip, or 0.0.0.0 (an RFC 5227 2.1.1 probe) when the bridge
    has no address in the subnet. Addresses in probe_for (the host's own)
    are always probed from 0.0.0.0: a request from an address for itself
    would be a gratuitous ARP, and only another holder answers anyway.
    """
    plain = arp.build_request(src_mac, src_ip or arp.ZERO_IP, arp.ZERO_IP, vlan)
    probe = arp.build_probe(src_mac, arp.ZERO_IP, vlan)
    tpa = (18 if vlan is not None else 14) + 24        # Ethernet (+802.1Q) + ARP up to tpa
    mine = {ip_int(a) for a in probe_for}

    def frame(n: int) -> bytes:
        base = probe if n in mine else plain
        return base[:tpa] + n.to_bytes(4, "big") + base[tpa + 4:]
    return frame


def is_answer(pkt: arp.ArpPacket, my_mac: str, vlan: int | None, own_macs=frozenset()) -> bool:
    """Does this ARP packet answer our sweep? A reply (RFC 826 op 2) in our VLAN,
    to us (or broadcast, as some devices do), from a MAC that is not this host's."""
    if pkt.op != arp.ARP_REPLY or pkt.vlan != vlan:
        return False
    if pkt.sender_mac == my_mac or pkt.sender_mac in own_macs or pkt.sender_ip == arp.ZERO_IP:
        return False
    return my_mac in (pkt.eth_dst, pkt.target_mac) or pkt.eth_dst == arp.BROADCAST


# -- when to send ---------------------------------------------------------------
class Sweep:
    """The send schedule of one sweep; feed it answers, ask it what is due.

    Every address gets one request in the first pass, in address order;
    an address that has not answered `timeout` seconds after a request gets
    another, each wait `backoff` times the one before (arp-scan(1) --timeout,
    --backoff), up to `retries` more. A token bucket holds the send rate at
    `rate` with bursts of at most `burst` frames; the first pass goes out
    before any retry, so on a large subnet the first wait is longer than
    `timeout`, never shorter. The sweep is over when
    nothing is left to send, every last wait has passed (or its address
    answered) and `linger` seconds have passed since the last frame, so
    late second answers (DUP) are still heard.
    """

    def __init__(self, addresses, *, rate: float = RATE, retries: int = RETRIES,
                 timeout: float = TIMEOUT_MS / 1000, backoff: float = BACKOFF,
                 linger: float | None = None, burst: float | None = None):
        if rate <= 0 or retries < 0 or timeout <= 0 or backoff < 1:
            raise ValueError("rate and timeout must be > 0, retries >= 0, backoff >= 1")
        self.addresses = addresses
        self._member = addresses if isinstance(addresses, range) else frozenset(addresses)
        self.rate = float(rate)
        self.waits = [timeout * backoff ** k for k in range(retries + 1)]
        self.linger = timeout if linger is None else linger
        self.burst = burst if burst is not None else max(1.0, min(64.0, self.rate / 200))
        self.sent = 0
        self.attempts: dict[int, int] = {}
        self.answers: dict[int, dict[str, float]] = {}      # ip -> {mac: first heard}
        self._cursor = 0
        # Retries per attempt number; each deque is in due order because sends are.
        self._retry = [deque() for _ in range(retries)]
        self._finals: deque = deque()                       # (deadline, ip) after the last attempt
        self._tokens = self.burst
        self._clock = None
        self._last_send = None

    def start(self, now: float) -> None:
        self._clock = now

    @property
    def first_pass_done(self) -> bool:
        return self._cursor >= len(self.addresses)

    def answer(self, ip: int, mac: str, now: float) -> bool:
        """Record that mac answered for ip; True when this (ip, mac) is new to the sweep."""
        if ip not in self._member:
            return False
        macs = self.answers.setdefault(ip, {})
        if mac in macs:
            return False
        macs[mac] = now
        return True

    def _refill(self, now: float) -> None:
        if self._clock is None:
            self._clock = now
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._clock) * self.rate)
        self._clock = max(self._clock, now)

    def _next_due(self, now: float) -> tuple[float, int, int] | None:
        """(due, ip, attempt index) of the earliest request due by now, answered ones dropped."""
        best = None
        if not self.first_pass_done:
            best = (float("-inf"), self.addresses[self._cursor], 0)
        self._prune()
        for k, q in enumerate(self._retry, start=1):
            if q and q[0][0] <= now and (best is None or q[0][0] < best[0]):
                best = (q[0][0], q[0][1], k)
        return best

    def due(self, now: float) -> list[int]:
        """Addresses to send a request to now (the rate allowing); marks them sent."""
        self._refill(now)
        out = []
        while self._tokens >= 1:
            nxt = self._next_due(now)
            if nxt is None:
                break
            _due, ip, k = nxt
            if k == 0:
                self._cursor += 1
            else:
                self._retry[k - 1].popleft()
            self._tokens -= 1
            self.sent += 1
            self.attempts[ip] = k + 1
            self._last_send = now
            wait_until = now + self.waits[k]
            if k < len(self._retry):
                self._retry[k].append((wait_until, ip))
            else:
                self._finals.append((wait_until, ip))
            out.append(ip)
        return out

    def _prune(self) -> None:
        """Drop answered addresses from the heads of the retry queues (the rest wait their turn)."""
        for q in self._retry:
            while q and q[0][1] in self.answers:
                q.popleft()

    def _drop_finals(self, now: float) -> None:
        f = self._finals
        while f and (f[0][0] <= now or f[0][1] in self.answers):
            f.popleft()

    def wakeup(self, now: float) -> float:
        """When something next needs doing: a send, a last wait ending, the linger."""
        self._prune()
        nexts = [now] if not self.first_pass_done else []
        nexts += [q[0][0] for q in self._retry if q]
        if nexts:
            t = min(nexts)
            if self._tokens < 1:
                t = max(t, self._clock + (1 - self._tokens) / self.rate)
            return max(t, now)
        self._drop_finals(now)
        ends = [self._finals[0][0]] if self._finals else []
        if self._last_send is not None:
            ends.append(self._last_send + self.linger)
        return max([now] + ends)

    def done(self, now: float) -> bool:
        self._prune()
        if not self.first_pass_done or any(self._retry):
            return False
        self._drop_finals(now)
        if self._finals:
            return False
        return self._last_send is None or now >= self._last_send + self.linger

"""Drive an acd.ProbeRun over the wire with the monotonic clock. The only timing loop.

Kept apart from wire.py (sockets, no decisions) and acd.py (decisions, no
sockets): this is the glue, and it is small on purpose.
"""
from __future__ import annotations

import time

from phoenix_hook.net import arp, ndp
from phoenix_hook.net.acd import ProbeRun


def run(probe: ProbeRun, wire, deadline: float | None = None, clock=time.monotonic) -> ProbeRun:
    """Run until the probe is done or the absolute deadline passes.

    Every send that fails raises wire.WireError: a probe that could not be
    sent proves nothing, so it is never reported as clear (REFERENCE 6,
    the arping -D pitfall). Likewise an answer the kernel dropped (a full
    receive buffer) or one still queued when the window closed: the queue is
    read to its end, and the wire's drop counters go to probe.note_dropped.
    """
    now = clock()
    probe.start(now)
    while not probe.done(now):
        if deadline is not None and now >= deadline:
            raise TimeoutError("the deadline passed before probing finished")
        for iface, frame in probe.due(now):
            wire.send(iface, frame)
        wake = probe.wakeup()
        if deadline is not None:
            wake = min(wake, deadline)
        _feed(probe, wire.receive(max(0.0, wake - clock())), clock)
        now = clock()
    # Frames that arrived within the window but were not read yet still count.
    while not (probe.conflicts and probe.stop_on_first):
        frames = wire.receive(0.0)
        if not frames:
            break
        _feed(probe, frames, clock)
        if deadline is not None and clock() >= deadline:
            raise TimeoutError("the deadline passed before the received frames were read")
    dropped = getattr(wire, "dropped", None)
    if dropped is not None:
        probe.note_dropped(dropped())
    return probe


def _feed(probe: ProbeRun, frames, clock) -> None:
    for iface, frame, vlan in frames:
        # ARP for IPv4 candidates, NS/NA for IPv6 ones; acd.judge matches them up
        pkt = arp.parse(frame, vlan) or ndp.parse(frame, vlan)
        if pkt is not None:
            probe.feed(iface, pkt, clock())

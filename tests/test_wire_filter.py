"""wire.narrow_filter and Wire.dropped: only frames about the probed addresses reach the
probe's socket, and frames the kernel drops are counted, never mistaken for silence.

The programs are run twice: by a small classic-BPF interpreter here (pure, property
tests over arbitrary frames) and by the kernel in a namespace lab (the real thing).
"""
from __future__ import annotations

import struct
import sys

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from conftest import REPO
from phoenix_hook.net import arp, ndp, wire

SRC = "16:0d:a0:c0:b9:1b"
PROBED = ["10.0.0.151", "10.0.0.152", "fd00::151"]


# -- a classic BPF interpreter for the instructions the filters use ------------------
def run_bpf(prog: bytes, frame: bytes, pkttype: int = 0) -> int:
    """Return value of the program for frame (0: dropped), as net/core/filter.c runs it:
    a load beyond the frame ends the program with 0."""
    ins = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    a = x = pc = 0
    steps = 0
    while True:
        steps += 1
        assert steps < 100000 and 0 <= pc < len(ins), "program ran off its end"
        code, jt, jf, k = ins[pc]
        pc += 1
        if code in (0x20, 0x28, 0x30, 0x40, 0x48, 0x50):       # ld w/h/b, abs or ind
            size = {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
            if code == 0x20 and k >= 0xFFFFF000:                 # ancillary: SKF_AD_PKTTYPE only
                assert k == (-0x1000 + 4) & 0xFFFFFFFF
                a = pkttype
                continue
            off = k + (x if code & 0x40 else 0)
            if off + size > len(frame):
                return 0
            a = int.from_bytes(frame[off:off + size], "big")
        elif code == 0x01:                                       # ldx imm
            x = k
        elif code == 0x15:                                       # jeq k
            pc += jt if a == k else jf
        elif code == 0x05:                                       # ja
            pc += k
        elif code == 0x06:                                       # ret k
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")


def about(frame: bytes, addrs) -> bool:
    """The rule the narrow filter implements, in plain Python over the parsers."""
    for aux in (None,):
        p = arp.parse(frame, aux)
        if p is not None:
            return p.sender_ip in addrs or p.target_ip in addrs
        n = ndp.parse(frame, aux)
        if n is not None:
            return n.target in addrs or n.ip_src in addrs
    return False


ips4 = st.sampled_from(["10.0.0.151", "10.0.0.152", "10.0.0.153", "0.0.0.0", "192.168.1.151"])
ips6 = st.sampled_from(["fd00::151", "fd00::152", "fe80::1"])
vlans = st.one_of(st.none(), st.integers(1, 4094))


@st.composite
def frames(draw):
    kind = draw(st.sampled_from(["probe", "request", "reply", "announce", "dad", "advert"]))
    vlan = draw(vlans)
    if kind == "probe":
        return arp.build_probe(SRC, draw(ips4), vlan)
    if kind == "request":
        return arp.build_request(SRC, draw(ips4), draw(ips4), vlan)
    if kind == "reply":
        return arp.build_reply(SRC, draw(ips4), arp.BROADCAST, draw(ips4), vlan=vlan)
    if kind == "announce":
        return arp.build_announcement(SRC, draw(ips4), vlan)
    if kind == "dad":
        return ndp.build_dad_probe(SRC, draw(ips6), vlan)
    return ndp.build_advert(SRC, draw(ips6), vlan)


@hsettings(max_examples=400, deadline=None)
@given(frames())
def test_narrow_filter_passes_exactly_the_frames_about_probed_addresses(frame):
    prog = wire.narrow_filter(PROBED)
    assert bool(run_bpf(prog, frame)) == about(frame, PROBED), frame.hex()


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_narrow_filter_never_crashes_and_never_passes_what_the_plain_filter_drops(junk):
    narrow, plain = wire.narrow_filter(PROBED), wire._FILTER
    assert not (run_bpf(narrow, junk) and not run_bpf(plain, junk))


def test_outgoing_copies_are_dropped():
    frame = arp.build_reply(SRC, "10.0.0.151", arp.BROADCAST, "10.0.0.1")
    prog = wire.narrow_filter(PROBED)
    assert run_bpf(prog, frame, pkttype=0) and not run_bpf(prog, frame, pkttype=wire.PACKET_OUTGOING)


def test_many_addresses_keep_jumps_short_and_fall_back_past_the_cap():
    many = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(wire.MAX_NARROW - 10)] + \
           [f"fd00::{i:x}" for i in range(1, 11)]
    prog = wire.narrow_filter(many)
    assert len(prog) // 8 <= 4096
    jumps = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert max(max(jt, jf) for code, jt, jf, _k in jumps if code == 0x15) <= 7   # local jumps only
    assert run_bpf(prog, arp.build_probe(SRC, many[-11]))
    assert run_bpf(prog, ndp.build_dad_probe(SRC, "fd00::a"))
    assert not run_bpf(prog, arp.build_probe(SRC, "10.9.9.9"))
    too_many = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(wire.MAX_NARROW + 1)]
    assert wire.narrow_filter(too_many) == wire._FILTER


def test_the_plain_filter_still_passes_all_arp_and_nd():
    for frame in (arp.build_probe(SRC, "10.9.9.9"), ndp.build_dad_probe(SRC, "fd00::9"),
                  arp.build_announcement(SRC, "10.9.9.9", vlan=20)):
        assert run_bpf(wire._FILTER, frame)


# -- the kernel ------------------------------------------------------------------
_SEND = """
import sys
from phoenix_hook.net import arp, ndp, wire
mac = open('/sys/class/net/eth0/address').read().strip()
frames = [arp.build_announcement(mac, '10.0.0.%d' % i) for i in range(2, 50)]      # others
frames += [arp.build_request(mac, '10.0.0.7', '10.0.0.%d' % i) for i in range(60, 90)]
frames += [ndp.build_dad_probe(mac, 'fd00::%x' % i) for i in range(2, 30)]
frames += [arp.build_reply(mac, '10.0.0.151', arp.BROADCAST, '10.0.0.1'),          # ours
           arp.build_probe(mac, '10.0.0.152', vlan=20),
           arp.build_request(mac, '10.0.0.9', '10.0.0.151'),
           ndp.build_advert(mac, 'fd00::151')]
w = wire.Wire(['eth0'])
for f in frames:
    w.send('eth0', f)
print(len(frames))
"""

_RECEIVE = """
import sys, time
from phoenix_hook.net import arp, ndp, wire
w = wire.Wire(['vmbr0'], only=%r)
print('ready', flush=True)
seen, end = [], time.monotonic() + %f
while time.monotonic() < end:
    for _i, f, v in w.receive(0.05):
        p = arp.parse(f, v)
        if p is not None:
            seen.append('arp %%s %%s %%s' %% (p.sender_ip, p.target_ip, p.vlan))
            continue
        n = ndp.parse(f, v)
        seen.append('nd %%s' %% n.target if n else 'other')
print('\\n'.join(seen), flush=True)
"""


def _pyenv():
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}


def test_kernel_runs_the_narrow_filter(lab):
    host = lab.add_host("talker", "10.0.0.7/24")
    lab.wait_link_ready()
    rx = lab.spawn(lab.pve, [sys.executable, "-c", _RECEIVE % (PROBED, 1.5)], env=_pyenv(), ready="ready")
    p = lab.run(host, [sys.executable, "-c", _SEND], env=_pyenv())
    assert p.returncode == 0, p.stderr
    out, _err = rx.communicate(timeout=10)
    seen = [line for line in out.splitlines() if line and line != "ready"]
    # Only our four frames came through; the ~100 about other addresses never did.
    assert sorted(seen) == sorted(["arp 10.0.0.151 10.0.0.1 None", "arp 0.0.0.0 10.0.0.152 20",
                                   "arp 10.0.0.9 10.0.0.151 None", "nd fd00::151"]), seen


_DROPS = """
import socket, time
from phoenix_hook.net import wire
w = wire.Wire(['vmbr0'])
s = w._socks['vmbr0']
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # tiny, and never read
print('ready', flush=True)
time.sleep(%f)
first = w.dropped()['vmbr0']
second = w.dropped()['vmbr0']         # the kernel reset its counter on the first read
print(first, second, flush=True)
"""


def test_frames_the_kernel_drops_are_counted(lab, responder):
    noise = responder(lab.add_host("noise"), "--iface", "eth0", "--ip", "10.0.0.151", "--mode", "flood",
                      "--seed", "3")
    noise.wait_for(lambda ls: any(" flood sent " in x for x in ls))
    rx = lab.spawn(lab.pve, [sys.executable, "-c", _DROPS % 1.0], env=_pyenv(), ready="ready")
    out, _err = rx.communicate(timeout=10)
    first, second = (int(x) for x in out.split()[-2:])
    assert first > 0, out                  # the flood overflowed the buffer, and we know it
    assert second >= first                 # counted since the Wire opened, not since the last read


def test_unread_counter_is_a_loss_not_none():
    """A socket whose statistics cannot be read counts one loss: unknown is not zero."""
    class Broken:
        def getsockopt(self, *a):
            raise OSError(95, "Operation not supported")

        def close(self):
            pass
    w = wire.Wire([])
    w._socks["vmbr0"] = Broken()
    assert w.dropped() == {"vmbr0": 1}
    w._socks.clear()


@pytest.mark.parametrize("n", [1, 3])
def test_probe_run_reads_what_is_queued_after_the_window(n):
    """probe.run reads the frames still queued when the window closes: an answer that
    arrived in time but was not read yet is not silence."""
    from phoenix_hook.net import acd, probe

    class Clock:
        now = 100.0

        def __call__(self):
            return self.now

    clock = Clock()

    class LateWire:
        def __init__(self):
            self.calls = 0

        def send(self, iface, frame):
            pass

        def receive(self, timeout):
            self.calls += 1
            if timeout > 0:
                clock.now += timeout          # nothing read while the window is open
                return []
            return [("vmbr0", arp.build_reply(SRC, "10.0.0.151", arp.BROADCAST, "0.0.0.0"), None)] * n

        def dropped(self):
            return {"vmbr0": 0}

    cand = acd.Candidate(key="net0", ip="10.0.0.151", iface="vmbr0", src_mac="02:aa:00:00:00:01")
    run = acd.ProbeRun([cand], acd.schedule_for(300), rand=lambda: 0.5)
    probe.run(run, LateWire(), deadline=clock.now + 5, clock=clock)
    assert run.conflicts["net0"][0].mac == SRC


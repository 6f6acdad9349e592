"""net/bpf.py: the watch's kernel filter, run on a small classic-BPF interpreter and in the kernel.

The interpreter follows the kernel's semantics for the instructions the
program uses (net/core/filter.c, Documentation/networking/filter.rst): a
load past the end of the frame ends the program with 0 (drop), jumps are
relative to the next instruction. Property: on every frame, the filter
keeps at least what the watch's rules could act on (no event is ever
filtered away), and for well-formed frames exactly the frames that speak
for a watched address (IPv6 by its low 32 bits).
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phoenix_hook.net import arp, bpf, ndp
from phoenix_hook.watch import rules

OUTGOING, HOST, BROADCAST = 4, 0, 1


def run_bpf(prog, frame: bytes, pkttype: int = BROADCAST) -> int:
    a = x = 0
    pc = 0
    n = len(frame)
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == bpf.LD_W_ABS:
            if k == bpf.SKF_AD_PKTTYPE:
                a = pkttype
            elif k + 4 > n:
                return 0
            else:
                a = int.from_bytes(frame[k:k + 4], "big")
        elif code == bpf.LD_H_ABS:
            if k + 2 > n:
                return 0
            a = int.from_bytes(frame[k:k + 2], "big")
        elif code == bpf.LD_W_IND:
            if x + k + 4 > n:
                return 0
            a = int.from_bytes(frame[x + k:x + k + 4], "big")
        elif code == bpf.LD_B_IND:
            if x + k + 1 > n:
                return 0
            a = frame[x + k]
        elif code == bpf.LDX_IMM:
            x = k
        elif code == bpf.JA:
            pc += k
        elif code == bpf.JEQ:
            pc += jt if a == k else jf
        elif code == bpf.JGT:
            pc += jt if a > k else jf
        elif code == bpf.RET:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")


def valid(prog) -> None:
    """What the kernel's classic checker (bpf_check_classic) insists on."""
    assert 0 < len(prog) <= bpf.BPF_MAXINSNS
    assert prog[-1][0] == bpf.RET
    for pc, (code, jt, jf, k) in enumerate(prog):
        if code == bpf.JA:
            assert pc + 1 + k < len(prog), pc
        elif code in (bpf.JEQ, bpf.JGT):
            assert 0 <= jt <= 255 and 0 <= jf <= 255
            assert pc + 1 + max(jt, jf) < len(prog), pc


V4 = ["10.0.0.151", "10.0.0.152", "192.168.50.7", "172.16.0.1"]
V6 = ["fd00::151", "2001:db8::1:2", "fe80::5054:ff:fe67:89b1"]
SQUAT = "16:0d:a0:c0:b9:1b"


def frames_for(ip: str, vlan=None):
    """(frame, should the filter keep it) for the kinds of ARP/ND frame about ip."""
    if ":" in ip:
        return [(ndp.build_advert(SQUAT, ip, vlan=vlan), True),
                (ndp.build_dad_probe(SQUAT, ip, vlan=vlan), True),
                (ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:00:01", ip_src=ip,
                           ip_dst="ff02::1:ff00:1", target="fd00::9", src_lladdr=SQUAT, vlan=vlan), True),
                # someone resolving ip (an NS from another address): ordinary traffic
                (ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:00:01",
                           ip_src="fd00::9", ip_dst=ndp.solicited_node(ip), target=ip, src_lladdr=SQUAT,
                           vlan=vlan), False)]
    return [(arp.build_announcement(SQUAT, ip, vlan=vlan), True),
            (arp.build_reply(SQUAT, ip, "02:00:00:00:00:01", "10.9.9.9", vlan=vlan), True),
            (arp.build_request(SQUAT, ip, "10.9.9.9", vlan=vlan), True),
            (arp.build_probe(SQUAT, ip, vlan=vlan), True),
            (arp.build_request(SQUAT, "10.9.9.9", ip, vlan=vlan), False)]     # who-has ip: not a claim


@pytest.mark.parametrize("vlan", [None, 20])
def test_frames_about_watched_addresses_pass_and_others_do_not(vlan):
    prog = bpf.watch_program(V4, V6)
    valid(prog)
    for ip in V4 + V6:
        for frame, keep in frames_for(ip, vlan):
            assert (run_bpf(prog, frame) != 0) == keep, (ip, frame.hex())
    for ip in ["10.0.0.153", "10.0.1.151", "fd00::152", "fd01::151:1"]:
        for frame, _keep in frames_for(ip, vlan):
            assert run_bpf(prog, frame) == 0, (ip, frame.hex())


def test_own_outgoing_frames_and_other_protocols_are_dropped():
    prog = bpf.watch_program(V4, V6)
    frame = arp.build_announcement(SQUAT, V4[0])
    assert run_bpf(prog, frame, HOST) != 0
    assert run_bpf(prog, frame, OUTGOING) == 0
    rarp = frame[:12] + b"\x80\x35" + frame[14:]                 # RARP (QEMU after a migration)
    assert run_bpf(prog, rarp) == 0
    assert run_bpf(prog, frame[:20]) == 0                        # cut short: no read past the end
    assert run_bpf(prog, b"") == 0


def test_empty_sets_drop_everything_and_the_program_is_valid():
    prog = bpf.watch_program([], [])
    valid(prog)
    for frame, _ in frames_for("10.0.0.1") + frames_for("fd00::1"):
        assert run_bpf(prog, frame) == 0


def test_a_dad_probe_is_judged_by_its_target_even_when_only_the_low_word_of_the_source_is_zero():
    # fd00::1:0:0 has a zero low word: an NS from it is not a DAD probe and is judged by its source
    prog = bpf.watch_program([], ["fd00::1:0:0"])
    ns = ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:00:09", ip_src="fd00::1:0:0",
                   ip_dst="ff02::1:ff00:9", target="fd00::9", src_lladdr=SQUAT)
    assert run_bpf(prog, ns) != 0


def test_large_sets_fit_and_too_large_ones_say_so():
    v4 = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(1200)]
    v6 = [str(ipaddress.IPv6Address(0xFD00 << 112 | 0x10000 | i)) for i in range(1000)]
    prog = bpf.watch_program(v4, v6)
    valid(prog)
    for ip in (v4[0], v4[599], v4[-1], v6[0], v6[-1]):
        assert all((run_bpf(prog, f) != 0) == keep for f, keep in frames_for(ip))
    assert bpf.watch_program([str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(4000)], []) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v4=st.sets(st.ip_addresses(v=4).map(str), max_size=40),
       v6=st.sets(st.ip_addresses(v=6).map(str), max_size=40),
       probe=st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
       vlan=st.one_of(st.none(), st.integers(1, 4094)))
def test_filter_matches_the_rules_for_well_formed_frames(v4, v6, probe, vlan):
    prog = bpf.watch_program(v4, v6)
    valid(prog)
    low6 = {bpf.ipv6_key(a) for a in v6}
    for ip in list(v4)[:3] + list(v6)[:3] + [probe]:
        if ipaddress.ip_address(ip).is_multicast or ipaddress.ip_address(ip).is_unspecified:
            continue
        try:
            cases = frames_for(ip, vlan)
        except ValueError:
            continue
        for frame, _keep in cases:
            seen = rules.read(frame, None)
            assert seen is not None
            family, spoken_for = seen[0], seen[1]
            if family == 4:
                want = spoken_for in v4
            else:
                want = bpf.ipv6_key(spoken_for) in low6
            assert (run_bpf(prog, frame) != 0) == want, (ip, seen)


@settings(max_examples=300, deadline=None)
@given(v4=st.sets(st.ip_addresses(v=4).map(str), min_size=1, max_size=10),
       data=st.binary(min_size=0, max_size=120), tagged=st.booleans())
def test_no_event_is_ever_filtered_away(v4, data, tagged):
    """Arbitrary bytes after an ARP header: whatever rules.read takes for a frame about a
    watched address, the filter keeps."""
    ip = sorted(v4)[0]
    head = bytes(12) + (b"\x81\x00\x00\x14" if tagged else b"") + b"\x08\x06"
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + bytes.fromhex("020000000001") + \
        arp.ip_to_bytes(ip) + data
    frame = head + body
    prog = bpf.watch_program(v4, [])
    seen = rules.read(frame, None)
    if seen is not None and seen[1] in v4:
        assert run_bpf(prog, frame) != 0


def test_the_kernel_accepts_the_program():
    if os.geteuid() != 0:
        pytest.skip("attaching a filter to a packet socket needs root")
    from phoenix_hook.net.wire import WatchWire
    v4 = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(1200)]
    prog = bpf.assemble(bpf.watch_program(v4, ["fd00::151"]))
    # An unbound packet socket: the kernel checks the program; nothing is sent or received.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        WatchWire._attach(s, prog)
    finally:
        s.close()

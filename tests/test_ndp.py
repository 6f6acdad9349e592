"""IPv6 Duplicate Address Detection, the pure parts: ndp.py frames, the socket filter,
acd's IPv6 judge, guest ip6= parsing, the host's IPv6 addresses and run_check with
IPv6 candidates on a fake wire. No sockets, no root, no sleeping."""
from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from phoenix_hook.net import acd, arp, hostnet, ndp, wire
from phoenix_hook.checks import check
from phoenix_hook.checks.check import HostFacts, Options, config_warnings, plan_nic, run_check
from phoenix_hook.pve.guest import parse_config
from phoenix_hook.net.hostnet import Link
from phoenix_hook.checks.report import task_log_lines
from phoenix_hook.settings import Settings, parse as parse_settings
from test_check_unit import FakeWire

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BR = "02:aa:00:00:00:01"             # the bridge (ours)
HOST2 = "02:aa:00:00:00:02"          # another interface of this host
GUEST = "52:54:00:67:89:b1"
SQUAT = "16:0d:a0:c0:b9:1b"
IP6 = "fd00::151"
S = Settings(node="pve1")

# Captured in a lab namespace (Linux 6.x): the kernel holding fd00::151 (nodad) on
# a veth with MAC 16:0d:a0:c0:b9:1b answering ndp.build_dad_probe(..., "fd00::151")
# with an NA to all-nodes, and the same kernel's own DAD probe for its link-local
# address (with an RFC 7527 nonce option). Real checksums, computed by the kernel.
KERNEL_NA = bytes.fromhex(
    "333300000001160da0c0b91b86dd6000000000203afffd000000000000000000000000000151ff02000000000000"
    "000000000000000188" "00ea1220000000fd0000000000000000000000000001510201160da0c0b91b")
KERNEL_DAD_NS = bytes.fromhex(
    "3333ffc0b91b160da0c0b91b86dd6000000000203aff00000000000000000000000000000000"
    "ff0200000000000000000001ffc0b91b" "87003de700000000fe80000000000000140da0fffec0b91b0e01351890ac43ad")


def independent_checksum(frame: bytes, offset: int = 14) -> int:
    """RFC 4443 2.3 checksum, written apart from ndp.checksum: the sum of the
    pseudo-header and message as 16-bit words, folded, of the frame as sent."""
    ip = frame[offset:offset + 40]
    plen = int.from_bytes(ip[4:6], "big")
    msg = bytearray(frame[offset + 40:offset + 40 + plen])
    msg[2:4] = b"\0\0"
    pseudo = ip[8:24] + ip[24:40] + plen.to_bytes(4, "big") + bytes([0, 0, 0, 58])
    data = pseudo + bytes(msg) + (b"\0" if plen % 2 else b"")
    s = 0
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
    s = (s % 0xFFFF) or (0xFFFF if s else 0)   # end-around carry, as a modulus
    return 0xFFFF - s


def parsed(frame, aux=None):
    p = ndp.parse(frame, aux)
    assert p is not None, frame.hex()
    return p


# -- addresses -------------------------------------------------------------------

@pytest.mark.parametrize("ip, group, mac", [
    ("fd00::151", "ff02::1:ff00:151", "33:33:ff:00:01:51"),
    ("2001:db8::abcd:ef12:3456", "ff02::1:ff12:3456", "33:33:ff:12:34:56"),
    ("fe80::140d:a0ff:fec0:b91b", "ff02::1:ffc0:b91b", "33:33:ff:c0:b9:1b"),
])
def test_solicited_node_group_and_mac(ip, group, mac):
    assert ndp.solicited_node(ip) == group                  # RFC 4291 2.7.1
    assert ndp.multicast_mac(group) == mac                  # RFC 2464 7


@pytest.mark.parametrize("bad", ["", "fd00::1::2", "10.0.0.1", "fe80::1%eth0", "fd00::/64"])
def test_bad_addresses_raise_value_error(bad):
    with pytest.raises(ValueError):
        ndp.ip6_to_bytes(bad)


# -- the DAD probe we send (RFC 4862 5.4.2, RFC 4861 4.3) --------------------------

def test_dad_probe_layout_field_by_field():
    f = ndp.build_dad_probe(BR, IP6)
    assert len(f) == 14 + 40 + 24                            # no options, no padding needed
    assert f[0:6] == bytes.fromhex("3333ff000151")          # solicited-node MAC
    assert f[6:12] == arp.mac_to_bytes(BR)
    assert f[12:14] == b"\x86\xdd"
    ip = f[14:54]
    assert ip[0] >> 4 == 6 and ip[0:4] == b"\x60\0\0\0"    # version 6, class 0, flow 0
    assert int.from_bytes(ip[4:6], "big") == 24             # payload: the NS alone
    assert ip[6] == 58 and ip[7] == 255                     # ICMPv6, hop limit 255
    assert ip[8:24] == bytes(16)                            # source ::
    assert ip[24:40] == ipaddress.IPv6Address("ff02::1:ff00:151").packed
    icmp = f[54:]
    assert (icmp[0], icmp[1]) == (135, 0)                   # NS, code 0
    assert icmp[4:8] == bytes(4)                            # reserved
    assert icmp[8:24] == ipaddress.IPv6Address(IP6).packed  # target
    assert int.from_bytes(icmp[2:4], "big") == independent_checksum(f)


def test_dad_probe_tagged():
    f = ndp.build_dad_probe(BR, IP6, vlan=20)
    assert f[12:16] == b"\x81\x00\x00\x14" and f[16:18] == b"\x86\xdd"
    assert int.from_bytes(f[18 + 42:18 + 44], "big") == independent_checksum(f, offset=18)
    p = parsed(f)
    assert (p.vlan, p.target, p.is_dad) == (20, IP6, True)
    assert parsed(ndp.build_dad_probe(BR, IP6), aux=20) == p   # kernel-stripped tag: the same


def test_dad_probe_parses_back():
    p = parsed(ndp.build_dad_probe(BR, IP6))
    assert p == ndp.NdpPacket(type=135, target=IP6, ip_src="::", ip_dst="ff02::1:ff00:151", eth_src=BR,
                              eth_dst="33:33:ff:00:01:51", vlan=None, src_lladdr=None, tgt_lladdr=None)
    assert p.is_ns and p.is_dad and not p.is_na and p.link_mac == BR


def test_vlan_outside_range_refused():
    for vid in (0, 4095):
        with pytest.raises(ValueError):
            ndp.build_dad_probe(BR, IP6, vlan=vid)


# -- frames a Linux kernel sent ------------------------------------------------------

def test_kernel_na_parses_and_checksums_agree():
    assert int.from_bytes(KERNEL_NA[56:58], "big") == independent_checksum(KERNEL_NA)
    p = parsed(KERNEL_NA)
    assert (p.type, p.target, p.ip_src, p.ip_dst, p.eth_src, p.tgt_lladdr, p.flags) == \
           (136, IP6, IP6, "ff02::1", SQUAT, SQUAT, ndp.NA_OVERRIDE)
    assert p.link_mac == SQUAT
    # Our NA builder (the lab responder's) makes the kernel's frame byte for byte.
    assert ndp.build_advert(SQUAT, IP6) == KERNEL_NA


def test_kernel_dad_probe_with_nonce_option():
    assert int.from_bytes(KERNEL_DAD_NS[56:58], "big") == independent_checksum(KERNEL_DAD_NS)
    p = parsed(KERNEL_DAD_NS)
    assert p.is_dad and p.target == "fe80::140d:a0ff:fec0:b91b" and p.src_lladdr is None


# -- RFC 4861 7.1.1 / 7.1.2 validity: anything else is silently discarded --------------

def _rebuild(frame: bytes, *, hop=None, code=None, flags=None, target=None, opts=None, fix_csum=True):
    """Change fields of an untagged NS/NA frame and (by default) fix the checksum."""
    f = bytearray(frame[:54])
    icmp = bytearray(frame[54:])
    if hop is not None:
        f[21] = hop
    if code is not None:
        icmp[1] = code
    if flags is not None:
        icmp[4] = flags
    if target is not None:
        icmp[8:24] = ipaddress.IPv6Address(target).packed
    if opts is not None:
        icmp = icmp[:24] + opts
    f[18:20] = len(icmp).to_bytes(2, "big")
    if fix_csum:
        icmp[2:4] = b"\0\0"
        icmp[2:4] = ndp.checksum(bytes(f[22:38]), bytes(f[38:54]), bytes(icmp)).to_bytes(2, "big")
    return bytes(f + icmp)


def test_rebuild_helper_is_faithful():
    assert _rebuild(KERNEL_NA) == KERNEL_NA and ndp.parse(_rebuild(KERNEL_NA)) is not None


@pytest.mark.parametrize("change", [
    dict(hop=254),                                           # not from this link
    dict(hop=64),
    dict(code=1),
    dict(target="ff02::1"),                                  # multicast target
    dict(flags=ndp.NA_SOLICITED | ndp.NA_OVERRIDE),          # multicast NA marked solicited
    dict(opts=b"\x02\x00" + bytes(6)),                       # zero-length option
    dict(opts=b"\x02\x02" + bytes(6)),                       # option runs past the end
    dict(opts=b"\x02"),                                      # half an option header
])
def test_invalid_na_discarded(change):
    assert ndp.parse(_rebuild(KERNEL_NA, **change)) is None


def test_bad_checksum_discarded():
    f = bytearray(KERNEL_NA)
    f[57] ^= 0x01
    assert ndp.parse(bytes(f)) is None
    f = bytearray(KERNEL_NA)
    f[-1] ^= 0x40                                            # the MAC in the option
    assert ndp.parse(bytes(f)) is None


def test_dad_probe_rules():
    ns = ndp.build_dad_probe(SQUAT, IP6)
    # from :: it must carry no source link-layer option...
    assert ndp.parse(_rebuild(ns, opts=b"\x01\x01" + arp.mac_to_bytes(SQUAT))) is None
    # ...and go to a solicited-node group
    bad_dst = ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:00:00:00:01", ip_src="::",
                        ip_dst="ff02::1", target=IP6)
    assert ndp.parse(bad_dst) is None
    # unknown options (a nonce) are skipped, and a unicast NS may carry the SLLA
    assert parsed(_rebuild(ns, opts=b"\x0e\x01" + bytes(6))).is_dad
    ns_src = ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:01:51", ip_src="fd00::7",
                       ip_dst="ff02::1:ff00:151", target=IP6, src_lladdr=SQUAT, flags=0xE0)
    p = parsed(ns_src)
    assert (p.is_dad, p.src_lladdr, p.flags, p.link_mac) == (False, SQUAT, 0, SQUAT)


def test_unicast_na_may_be_solicited():
    f = ndp.build(ndp.ND_NEIGHBOR_ADVERT, eth_src=SQUAT, eth_dst=BR, ip_src=IP6, ip_dst="fe80::1", target=IP6,
                  flags=ndp.NA_SOLICITED | ndp.NA_OVERRIDE)
    p = parsed(f)
    assert p.tgt_lladdr is None and p.link_mac == SQUAT and p.flags == ndp.NA_SOLICITED | ndp.NA_OVERRIDE


def test_ethernet_padding_ignored_truncation_refused():
    assert parsed(KERNEL_NA + bytes(30)) == parsed(KERNEL_NA)
    for n in (0, 13, 14, 53, 54, 77, len(KERNEL_NA) - 1):
        assert ndp.parse(KERNEL_NA[:n]) is None


def test_not_ours():
    assert ndp.parse(arp.build_probe(BR, "10.0.0.151")) is None
    echo = _rebuild(KERNEL_NA)
    echo = echo[:54] + bytes([128]) + echo[55:]              # ICMPv6 echo request
    assert ndp.parse(echo) is None
    udp = bytearray(KERNEL_NA)
    udp[20] = 17
    assert ndp.parse(bytes(udp)) is None
    v4 = bytearray(KERNEL_NA)
    v4[14] = 0x40
    assert ndp.parse(bytes(v4)) is None


def test_vlan_rules_like_arp():
    tagged = ndp.build_advert(SQUAT, IP6, vlan=30)
    assert parsed(tagged).vlan == 30
    assert ndp.parse(tagged, aux_vlan=20) is None             # QinQ: not ours to judge
    prio = KERNEL_NA[:12] + b"\x81\x00\x00\x00" + KERNEL_NA[12:]
    assert parsed(prio).vlan is None                          # VID 0: priority-tagged


# -- property tests ------------------------------------------------------------------

macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
unicast6 = st.binary(min_size=16, max_size=16).map(ipaddress.IPv6Address).filter(
    lambda a: not a.is_multicast).map(lambda a: a.compressed)
vlans = st.one_of(st.none(), st.integers(1, 4094))


@FAST
@given(st.binary(max_size=160), st.one_of(st.none(), st.integers(0, 4095)))
@example(KERNEL_NA[:60], None)
def test_parse_never_raises_on_bytes(frame, aux):
    p = ndp.parse(frame, aux)
    assert p is None or isinstance(p, ndp.NdpPacket)
    if p is not None:
        assert p.type in (135, 136) and not ipaddress.IPv6Address(p.target).is_multicast
        assert p.vlan is None or 1 <= p.vlan <= 4095


@FAST
@given(st.sampled_from([KERNEL_NA, KERNEL_DAD_NS, ndp.build_dad_probe(BR, IP6, vlan=7)]),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 100))
def test_parse_never_raises_on_mangled_frames(frame, edits, cut):
    f = bytearray(frame)
    for pos, val in edits:
        if pos < len(f):
            f[pos] = val
    f = bytes(f[:len(f) - cut % 8] if cut % 3 else f)
    p = ndp.parse(f)
    assert p is None or isinstance(p, ndp.NdpPacket)
    if p is not None:          # a frame that still parses still has a valid checksum
        off = 18 if f[12:14] == b"\x81\x00" else 14
        assert int.from_bytes(f[off + 42:off + 44], "big") == independent_checksum(f, off)


@FAST
@given(macs, unicast6, vlans)
def test_dad_probe_round_trip(src, target, vlan):
    f = ndp.build_dad_probe(src, target, vlan)
    p = parsed(f)
    assert (p.type, p.target, p.ip_src, p.eth_src, p.vlan) == (135, target, "::", src, vlan)
    assert p.ip_dst == ndp.solicited_node(target) and p.eth_dst == ndp.multicast_mac(p.ip_dst)
    off = 14 if vlan is None else 18
    assert int.from_bytes(f[off + 42:off + 44], "big") == independent_checksum(f, off)


@FAST
@given(macs, unicast6, vlans, st.sampled_from([0, ndp.NA_OVERRIDE, ndp.NA_ROUTER | ndp.NA_OVERRIDE]))
def test_advert_round_trip(src, target, vlan, flags):
    f = ndp.build_advert(src, target, vlan=vlan, flags=flags)
    p = parsed(f)
    assert (p.type, p.target, p.ip_src, p.ip_dst, p.eth_src, p.tgt_lladdr, p.flags, p.vlan) == \
           (136, target, target, "ff02::1", src, src, flags, vlan)
    if vlan is not None:       # the same NA with the tag moved to PACKET_AUXDATA
        assert parsed(ndp.build_advert(src, target, flags=flags), aux=vlan) == p


# -- the socket filter (wire._arp_filter), run by a small classic-BPF interpreter ------

def run_bpf(prog: bytes, frame: bytes, pkttype: int = 0) -> int:
    """Classic BPF as the kernel runs it on a packet socket (net/core/filter.c), for the
    instructions the filter uses. A load past the end of the frame returns 0 (drop)."""
    ins = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    a = x = pc = 0
    while True:
        code, jt, jf, k = ins[pc]
        pc += 1
        if code == 0x20:                                     # ld [k] (word)
            if k == (-0x1000 + 4) & 0xFFFFFFFF:
                a = pkttype
            elif k + 4 > len(frame):
                return 0
            else:
                a = int.from_bytes(frame[k:k + 4], "big")
        elif code == 0x28:                                   # ldh [k]
            if k + 2 > len(frame):
                return 0
            a = int.from_bytes(frame[k:k + 2], "big")
        elif code == 0x50:                                   # ldb [x + k]
            if x + k + 1 > len(frame):
                return 0
            a = frame[x + k]
        elif code == 0x01:                                   # ldx #k
            x = k
        elif code == 0x15:                                   # jeq #k
            pc += jt if a == k else jf
        elif code == 0x06:                                   # ret #k
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not modelled")


# The filter before IPv6 support: ARP decisions must not change.
OLD_ARP_FILTER = b"".join(struct.pack("HBBI", *i) for i in [
    (0x20, 0, 0, (-0x1000 + 4) & 0xFFFFFFFF), (0x15, 5, 0, 4), (0x28, 0, 0, 12), (0x15, 4, 0, 0x0806),
    (0x15, 0, 2, 0x8100), (0x28, 0, 0, 16), (0x15, 1, 0, 0x0806), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFF)])


def _tag(frame: bytes, vid: int) -> bytes:
    return frame[:12] + struct.pack("!HH", 0x8100, vid) + frame[12:]


@pytest.mark.parametrize("frame, accepted", [
    (arp.build_probe(BR, "10.0.0.151"), True),
    (arp.build_probe(BR, "10.0.0.151", vlan=20), True),
    (KERNEL_NA, True),
    (KERNEL_DAD_NS, True),
    (ndp.build_dad_probe(BR, IP6, vlan=20), True),
    (_tag(KERNEL_NA, 30), True),
    (KERNEL_NA[:54] + bytes([128]) + KERNEL_NA[55:], False),          # echo request
    (KERNEL_NA[:54] + bytes([134]) + KERNEL_NA[55:], False),          # router advertisement
    (KERNEL_NA[:20] + bytes([17]) + KERNEL_NA[21:], False),           # UDP
    (KERNEL_NA[:20] + bytes([0]) + KERNEL_NA[21:], False),            # hop-by-hop header first (MLD)
    (KERNEL_NA[:12] + b"\x08\x00" + KERNEL_NA[14:], False),           # IPv4
    (KERNEL_NA[:40], False),                                          # too short to tell
    (_tag(_tag(KERNEL_NA, 30), 40), False),                           # QinQ
])
def test_socket_filter(frame, accepted):
    prog = wire._arp_filter()
    assert (run_bpf(prog, frame) != 0) is accepted
    assert run_bpf(prog, frame, pkttype=wire.PACKET_OUTGOING) == 0    # our own copies: never


@FAST
@given(st.binary(max_size=80), st.sampled_from([0, 1, 2, 3, 4]))
@example(arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0"), 0)
@example(_tag(arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0"), 5), 4)
def test_socket_filter_arp_decisions_unchanged(frame, pkttype):
    new = run_bpf(wire._arp_filter(), frame, pkttype)
    old = run_bpf(OLD_ARP_FILTER, frame, pkttype)
    is_v6 = len(frame) >= 14 and (frame[12:14] == b"\x86\xdd" or frame[12:14] == b"\x81\x00"
                                  and frame[16:18] == b"\x86\xdd")
    if not is_v6:
        assert new == old


# -- acd: the IPv6 judge (RFC 4862 5.4.3, 5.4.4) -------------------------------------

def cand6(ip=IP6, iface="vmbr0", vlan=None, tagged=False, guest_mac=GUEST, running=False):
    return acd.Candidate(key="net0", ip=ip, iface=iface, src_mac=BR, vlan=vlan, tagged=tagged,
                         guest_mac=guest_mac, guest_running=running, family=6)


def na(mac, target=IP6, vlan=None, tll=True):
    if tll:
        return parsed(ndp.build_advert(mac, target, vlan=vlan))
    return parsed(ndp.build(ndp.ND_NEIGHBOR_ADVERT, eth_src=mac, eth_dst="33:33:00:00:00:01", ip_src=target,
                            ip_dst="ff02::1", target=target, flags=ndp.NA_OVERRIDE, vlan=vlan))


def judge(p, c=None, own=frozenset({BR, HOST2}), iface="vmbr0"):
    return acd.judge(p, iface, c or cand6(), own)


def test_probe_frame_is_a_dad_probe():
    c = cand6(vlan=20, tagged=True)
    p = parsed(c.probe_frame())
    assert (p.is_dad, p.target, p.eth_src, p.vlan) == (True, IP6, BR, 20)
    assert arp.parse(c.probe_frame()) is None


def test_na_for_the_address_is_a_conflict():
    hit = judge(na(SQUAT))
    assert (hit.kind, hit.mac, hit.ip, hit.family) == ("advertisement", SQUAT, IP6, 6)
    assert hit.detail == "advertised this address (IPv6 Neighbor Advertisement)"
    assert judge(na(SQUAT, tll=False)).mac == SQUAT             # no option: the Ethernet source


def test_na_names_the_mac_in_its_target_option():
    # A proxy / bonded host: the option names the holder, the frame came from elsewhere.
    f = ndp.build(ndp.ND_NEIGHBOR_ADVERT, eth_src="00:1b:21:00:00:07", eth_dst="33:33:00:00:00:01",
                  ip_src=IP6, ip_dst="ff02::1", target=IP6, tgt_lladdr=SQUAT, flags=ndp.NA_OVERRIDE)
    assert judge(parsed(f)).mac == SQUAT


def test_rival_dad_probe_is_a_conflict():
    hit = judge(parsed(ndp.build_dad_probe(SQUAT, IP6)))
    assert (hit.kind, hit.mac) == ("probe", SQUAT)
    assert "probing" in hit.detail


def test_ns_from_the_address_is_a_conflict_resolution_is_not():
    from_it = ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:00:01", ip_src=IP6,
                        ip_dst="ff02::1:ff00:1", target="fd00::1", src_lladdr=SQUAT)
    assert judge(parsed(from_it)).kind == "request"
    asking = ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:01:51", ip_src="fd00::7",
                       ip_dst="ff02::1:ff00:151", target=IP6, src_lladdr=SQUAT)
    assert judge(parsed(asking)) is None                        # someone resolving it: no claim


@pytest.mark.parametrize("p", [
    na(BR), na(HOST2), parsed(ndp.build_dad_probe(BR, IP6)),     # our own frames
    na(SQUAT, target="fd00::152"),                               # another address
    parsed(ndp.build_dad_probe(SQUAT, "fd00::152")),
    na(SQUAT, vlan=30),                                          # another VLAN
])
def test_not_a_conflict(p):
    assert judge(p) is None


def _na_mixed(eth_src, tll):
    return parsed(ndp.build(ndp.ND_NEIGHBOR_ADVERT, eth_src=eth_src, eth_dst="33:33:00:00:00:01",
                            ip_src=IP6, ip_dst="ff02::1", target=IP6, flags=ndp.NA_OVERRIDE,
                            tgt_lladdr=tll))


@pytest.mark.parametrize("eth_src,tll", [(HOST2, SQUAT), (SQUAT, HOST2)])
def test_a_frame_from_or_naming_one_of_the_hosts_own_macs_is_no_conflict(eth_src, tll):
    # Either half alone says the frame is this host's (sent by it, or pointing at it), as an
    # ARP frame from one of our MACs says in judge_arp; a foreign MAC on the other half
    # does not make it another node's claim. The IPv4 side has its test in test_acd.py.
    assert judge(_na_mixed(eth_src, tll)) is None
    assert judge(_na_mixed(eth_src, tll), own=frozenset({BR})) is not None     # the same frame, not ours


def test_other_interface_and_vlan():
    assert judge(na(SQUAT), iface="vmbr1") is None
    c = cand6(vlan=20, tagged=True)
    assert judge(na(SQUAT, vlan=20), c).kind == "advertisement"
    assert judge(na(SQUAT), c) is None and judge(na(SQUAT, vlan=30), c) is None
    untagged_rx = acd.Candidate(key="net0", ip=IP6, iface="vmbr0", src_mac=BR, vlan=20, tagged=True,
                                rx_untagged=True, family=6)
    assert judge(na(SQUAT), untagged_rx).kind == "advertisement"


def test_guest_own_mac():
    assert judge(na(GUEST), cand6(running=True)) is None         # the running guest itself
    assert judge(na(GUEST)).kind == "same-mac"                   # at pre-start: a copy
    assert "same MAC" in judge(na(GUEST)).detail
    assert judge(parsed(ndp.build_dad_probe(GUEST, IP6)), cand6(running=True)) is None
    assert judge(parsed(ndp.build_dad_probe(GUEST, IP6))).kind == "probe"


def test_families_do_not_mix():
    v4 = acd.Candidate(key="net0", ip="10.0.0.151", iface="vmbr0", src_mac=BR)
    assert acd.judge(na(SQUAT), "vmbr0", v4, frozenset()) is None
    assert acd.judge(arp.parse(arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0")), "vmbr0", cand6(),
                     frozenset()) is None
    mapped = acd.Candidate(key="net0", ip="::ffff:10.0.0.151", iface="vmbr0", src_mac=BR, family=6)
    assert acd.judge(arp.parse(arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0")), "vmbr0", mapped,
                     frozenset()) is None


def test_probe_run_sends_dad_and_records_conflicts():
    v4 = acd.Candidate(key="a", ip="10.0.0.151", iface="vmbr0", src_mac=BR)
    v6 = acd.Candidate(key="b", ip=IP6, iface="vmbr0", src_mac=BR, family=6)
    run = acd.ProbeRun([v4, v6], acd.schedule_for(900), own_macs=frozenset({BR}), stop_on_first=False,
                       rand=lambda: 0.0)
    run.start(100.0)
    frames = [f for _i, f in run.due(100.0)]
    assert arp.parse(frames[0]).is_probe and parsed(frames[1]).is_dad
    hits = run.feed("vmbr0", na(SQUAT), 100.25)
    assert [(h.key, h.kind, h.at) for h in hits] == [("b", "advertisement", 0.25)]
    assert run.feed("vmbr0", na(SQUAT), 100.3) == []             # one conflict per MAC
    assert list(run.conflicts) == ["b"] and not run.done(100.3)


# -- guest.py: ip6= ----------------------------------------------------------------

def lxc(*lines):
    return "\n".join(["hostname: ct", *lines]) + "\n"


@pytest.mark.parametrize("value, address, plen", [
    ("fd00::151/64", "fd00::151", 64),
    ("FD00:0:0:0::0151/64", "fd00::151", 64),                     # RFC 5952 form
    ("2001:db8::1/128", "2001:db8::1", 128),
    ("fe80::151/64", "fe80::151", 64),                            # link-local statics are allowed
])
def test_static_ip6(value, address, plen):
    n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,ip6={value},gw6=fd00::1"), 5).nics[0]
    assert (n.address6, n.prefixlen6, n.ip6, n.ip6_mode, n.error) == (address, plen, value, "static", None)
    assert n.address == "10.0.0.5"


@pytest.mark.parametrize("mode", ["auto", "dhcp", "manual"])
def test_ip6_modes_without_address(mode):
    n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip6={mode}"), 5).nics[0]
    assert (n.address6, n.ip6_mode, n.error) == (None, mode, None)
    assert parse_config(lxc("net0: name=eth0,bridge=vmbr0"), 5).nics[0].ip6_mode == "none"


@pytest.mark.parametrize("extra, words", [
    ("ip6=fd00::151", "ip6='fd00::151' is not auto, dhcp, manual or an IPv6 address with /prefix"),
    ("ip6=fd00::151/129", "ip6='fd00::151/129'"),
    ("ip6=fd00::151/", "ip6='fd00::151/'"),
    ("ip6=10.0.0.5/24", "ip6='10.0.0.5/24'"),
    ("ip6=fe80::1%eth0/64", "ip6='fe80::1%eth0/64'"),
    ("ip6=slaac", "ip6='slaac'"),
    ("ip6=::/0", "ip6='::/0'"),                       # PVE: prefixes below /8 are invalid
    ("ip6=fd00::151/7", "ip6='fd00::151/7'"),
    ("ip6=fd00::151/64,gw6=fd00::zz", "gw6='fd00::zz' is not an IPv6 address"),
])
def test_malformed_ip6_is_a_nic_error(extra, words):
    n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,{extra}"), 5).nics[0]
    assert words in (n.error or "")
    assert (n.address, n.address6, n.ip6_mode, n.ip_mode) == (None, None, "invalid", "invalid")


@pytest.mark.parametrize("ip6, words", [("ff02::1/64", "a multicast address"), ("::1/128", "the loopback address"),
                                        ("::ffff:10.0.0.5/96", "an IPv4-mapped address"),
                                        ("::/8", "the unspecified address")])
def test_valid_ip6_that_is_no_host_address_is_not_probed_and_no_error(ip6, words):
    """PVE accepts these (pve_verify_cidrv6), so the guest starts: not an error, never probed."""
    n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,ip6={ip6}"), 5).nics[0]
    assert n.error is None and n.address6 is None and n.ip6_mode == "unusable"
    assert words in n.note6 and n.address == "10.0.0.5"


def test_qemu_ipconfig_ip6():
    g = parse_config("name: vm\nnet0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\n"
                     "ipconfig0: ip=10.0.30.5/24,ip6=fd00::30:5/64,gw6=fd00::1\n"
                     "net1: virtio=A2:C0:43:67:08:A2,bridge=vmbr0\nipconfig1: ip6=auto\n"
                     "net2: virtio=A2:C0:43:67:08:A3,bridge=vmbr0\nipconfig2: ip6=junk\n", 120, "qemu")
    n0, n1, n2 = g.nics
    assert (n0.address, n0.address6, n0.prefixlen6) == ("10.0.30.5", "fd00::30:5", 64)
    assert (n1.address6, n1.ip6_mode) == (None, "auto")
    # qemu-server drops an ipconfigN it cannot parse: the NIC has no cloud-init address, no error
    assert n2.error is None and (n2.address, n2.address6) == (None, None)
    assert any(e.startswith("ipconfig2: ip6='junk'") for e in g.errors)


# -- hostnet: /proc/net/if_inet6 -----------------------------------------------------

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80    vmbr0
fd000000000000000000000000000002 04 40 00 80    vmbr0
fd000000000000000000000000000099 05 40 00 c0     eno1
fd000000000000000000000000000077 04 40 00 08    vmbr0
short line
zz000000000000000000000000000002 04 40 00 80    vmbr0
"""


def test_parse_if_inet6():
    assert list(hostnet.parse_if_inet6(IF_INET6)) == [
        ("fe80::fc:ff:fe00:1", "vmbr0"), ("fd00::2", "vmbr0"), ("fd00::99", "eno1")]   # ::1, DAD failed: out


@FAST
@given(st.text())
def test_parse_if_inet6_never_raises(text):
    for addr, dev in hostnet.parse_if_inet6(text):
        ipaddress.IPv6Address(addr)
        assert dev


# -- check.py: planning and running IPv6 candidates ------------------------------------

def link(name, mac, up=True, noarp=False, carrier=True, vf=False):
    return Link(name=name, mac=mac, up=up, noarp=noarp, carrier=carrier, is_bridge=True, vlan_filtering=vf)


def facts(*links, local6=(), local4=()):
    return HostFacts(links={lk.name: lk for lk in links}, local_ips=frozenset(local4),
                     macs=frozenset({lk.mac for lk in links}), local_ips6=frozenset(local6))


def ct(vmid, *nets, name="ct", node="pve1"):
    lines = [f"hostname: {name}"] + [f"net{i}: name=eth{i},{v}" for i, v in enumerate(nets)]
    return parse_config("\n".join(lines) + "\n", vmid, node=node)


def test_families_per_nic():
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24", "bridge=vmbr0,ip=10.0.0.152/24,ip6=fd00::152/64",
           "bridge=vmbr0,ip6=auto", "bridge=vmbr0,ip=10.0.0.5,ip6=fd00::5/64")
    # IPv6-only: one entry; an error NIC: one entry, the error
    assert [check.families(n) for n in g.nics] == [(4,), (4, 6), (6,), (4,)]


def test_plan_ip6_candidate():
    g = ct(951, f"bridge=vmbr0,hwaddr={GUEST},ip=10.0.0.151/24,ip6=fd00::151/64")
    n = g.nics[0]
    c = plan_nic(g, n, S, facts(link("vmbr0", BR)), running=True, family=6)
    assert c == acd.Candidate(key="net0", ip=IP6, iface="vmbr0", src_mac=BR, vlan=None, tagged=False,
                              guest_mac=GUEST, guest_running=True, family=6)
    assert plan_nic(g, n, S, facts(link("vmbr0", BR))).ip == "10.0.0.151"     # family 4 unchanged


def test_plan_ip6_tagged_like_ipv4():
    g = ct(951, "bridge=vmbr0,ip6=fd00::151/64,tag=20")
    c = plan_nic(g, g.nics[0], S, facts(link("vmbr0", BR)), family=6)
    assert (c.iface, c.tagged, c.vlan, c.rx_vlan) == ("vmbr0", True, 20, 20)
    assert parsed(c.probe_frame()).vlan == 20
    r = plan_nic(g, g.nics[0], S, facts(), family=6)
    assert (r.verdict, r.ip, r.family) == ("error", IP6, 6) and "vmbr0 does not exist" in r.note


@pytest.mark.parametrize("value, note", [("auto", "ip6=auto, no static IPv6 address to probe"),
                                         ("dhcp", "ip6=dhcp, no static IPv6 address to probe"),
                                         ("manual", "ip6=manual, no static IPv6 address to probe")])
def test_plan_ip6_modes_skipped(value, note):
    g = ct(951, f"bridge=vmbr0,ip=10.0.0.151/24,ip6={value}")
    r = plan_nic(g, g.nics[0], S, facts(link("vmbr0", BR)), family=6)
    assert (r.verdict, r.note, r.ip, r.family) == ("skipped", note, None, 6)


def test_plan_ip6_host_address():
    g = ct(951, "bridge=vmbr0,ip6=fd00::2/64", "bridge=vmbr0,ip6=fe80::1/64", "bridge=vmbr0,ip6=fe80::2/64",
           "bridge=vmbr0,ip6=fe80::3/64,tag=20")
    f = facts(link("vmbr0", BR), local6={("fd00::2", "eno1"), ("fe80::1", "vmbr0"), ("fe80::2", "eno1"),
                                          ("fe80::3", "vmbr0v20")})
    verdicts = [plan_nic(g, n, S, f, family=6) for n in g.nics]
    assert isinstance(verdicts[2], acd.Candidate)             # link-local on another link: probe it
    for r in (verdicts[0], verdicts[1], verdicts[3]):
        assert r.verdict == "conflict" and r.conflicts[0].source == "host", r
        assert r.conflicts[0].line == "is one of this host's own addresses"
    assert plan_nic(g, g.nics[0], S, f, family=4).verdict == "skipped"   # no IPv4 at all


def test_plan_ip6_ignore_list_holds_ipv4_only():
    s = parse_settings("[phoenix-hook]\nnode = pve1\nignore = 10.0.0.0/24\n")
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24,ip6=fd00::151/64")
    assert plan_nic(g, g.nics[0], s, facts(link("vmbr0", BR))).verdict == "skipped"
    assert isinstance(plan_nic(g, g.nics[0], s, facts(link("vmbr0", BR)), family=6), acd.Candidate)


def test_config_warnings_ip6():
    me = ct(951, "bridge=vmbr0,ip=10.0.0.151/24,ip6=fd00::151/64")
    twin6 = ct(952, "bridge=vmbr0,ip=10.0.0.152/24,ip6=FD00::0151/64", name="twin", node="pve2")
    other_vlan = ct(953, "bridge=vmbr0,ip6=fd00::151/64,tag=30")
    w = config_warnings(me, me.nics[0], [me, twin6, other_vlan], family=6)
    assert [x.vmid for x in w] == [952] and "configured with fd00::151 (net0)" in w[0].detail
    assert config_warnings(me, me.nics[0], [me, twin6, other_vlan]) == []


class FakeWire6(FakeWire):
    """Answers DAD probes for addresses in `holders` (ip6 -> (mac, vlan)) with the NA a
    Linux kernel sends; answers nothing else. receive() advances the fake clock."""

    def __init__(self, clock, holders=(), noise=()):
        super().__init__(clock, noise=noise)
        self.holders = dict(holders)

    def send(self, ifname, frame):
        self.sent.append((ifname, frame))
        p = ndp.parse(frame)
        if p is not None and p.target in self.holders:
            mac, vlan = self.holders[p.target]
            if p.vlan == vlan:
                self.inbox.append((ifname, ndp.build_advert(mac, p.target), vlan))


def describe(mac):
    return None, "vendor unknown, locally administered"


def run(guests, w, **opt):
    opt.setdefault("timeout", 900)
    return run_check(guests, S, Options(**opt), facts=facts(link("vmbr0", BR)), wire_factory=w,
                     describe=describe)


def test_run_check_v6_conflict_v4_clear(clock):
    g = ct(951, f"bridge=vmbr0,hwaddr={GUEST},ip=10.0.0.151/24,ip6=fd00::151/64")
    w = FakeWire6(clock, {IP6: (SQUAT, None)})
    rep = run([g], w, stop_on_first=False)
    v4, v6 = rep.guests[0].nics
    assert [(n.nic, n.ip, n.family, n.verdict) for n in (v4, v6)] == \
           [("net0", "10.0.0.151", 4, "clear"), ("net0", IP6, 6, "conflict")]
    c = v6.conflicts[0]
    assert (c.source, c.mac, c.line) == ("ndp", SQUAT, f"is in use by {SQUAT} (vendor unknown, locally administered)")
    assert c.detail == f"{SQUAT} advertised this address (IPv6 Neighbor Advertisement)"
    assert rep.verdict == "conflict" and rep.exit_code == 1
    kinds = sorted("arp" if arp.parse(f) else "dad" if ndp.parse(f).is_dad else "?" for _i, f in w.sent)
    assert kinds == ["arp"] * 3 + ["dad"]              # answered at once: no more DAD probes for it
    assert v6.to_json()["ip"] == IP6 and set(v6.to_json()) == set(v4.to_json())
    lines = task_log_lines(rep.guests[0], "start refused")
    assert f"phoenix-hook: CT 951 net0 {IP6} is in use by {SQUAT} (vendor unknown, locally administered) " \
           f"on vmbr0 - start refused" in lines
    assert any(x.startswith("phoenix-hook: CT 951 net0 10.0.0.151 is free on vmbr0") for x in lines)


def test_run_check_hook_mode_stops_at_the_first(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24,ip6=fd00::151/64")
    rep = run([g], FakeWire6(clock, {IP6: (SQUAT, None)}), stop_on_first=True)
    assert [n.verdict for n in rep.guests[0].nics] == ["skipped", "conflict"]


def test_run_check_v6_clear_and_skipped(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24,ip6=fd00::151/64", "bridge=vmbr0,ip=10.0.0.152/24,ip6=auto")
    w = FakeWire6(clock, noise=[("vmbr0", ndp.build_advert(SQUAT, "fd00::152"), None),
                                ("vmbr0", ndp.build_advert(BR, IP6), None)])
    rep = run([g], w)
    assert [(n.nic, n.family, n.verdict) for n in rep.guests[0].nics] == \
           [("net0", 4, "clear"), ("net0", 6, "clear"), ("net1", 4, "clear"), ("net1", 6, "skipped")]
    assert rep.guests[0].nics[1].note.endswith(", 3 probes")
    assert rep.verdict == "clear"


def test_run_check_claims_both_addresses_of_a_nic(clock):
    seen = []

    def claim(g, nic, address):
        seen.append((nic.key, address))
        return (952, 3.0) if ":" in address else None
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24,ip6=fd00::151/64")
    rep = run([g], FakeWire6(clock), claim=claim)
    assert seen == [("net0", "10.0.0.151"), ("net0", "fd00::151")]
    v6 = [n for n in rep.guests[0].nics if n.ip == "fd00::151"][0]
    assert v6.verdict == "conflict" and "guest 952 on this node is starting with fd00::151" in v6.conflicts[0].detail
    assert [(n["family"], n["ip"]) for n in rep.to_json()["guests"][0]["nics"]] == \
        [(4, "10.0.0.151"), (6, "fd00::151")]

"""arp.py: frame build and parse (RFC 826, RFC 5227 2.1.1 and 2.3, 802.1Q)."""
from __future__ import annotations

import struct

import pytest

from phoenix_hook.net import arp

BR = "02:00:00:00:00:01"
SQUAT = "16:0d:a0:c0:b9:1b"


def test_probe_shape_rfc5227_2_1_1():
    f = arp.build_probe(BR, "10.0.0.151")
    assert len(f) == 60                                   # padded to Ethernet minimum
    assert f[0:6] == b"\xff" * 6                          # broadcast
    assert f[6:12] == bytes.fromhex("020000000001")
    assert f[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", f[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert f[22:28] == bytes.fromhex("020000000001")      # sender MAC = ours
    assert f[28:32] == b"\0\0\0\0"                        # sender IP 0.0.0.0
    assert f[32:38] == b"\0" * 6                          # target MAC zero
    assert f[38:42] == bytes([10, 0, 0, 151])
    assert f[42:] == b"\0" * 18                           # padding
    p = arp.parse(f)
    assert p.is_probe and not p.is_announcement
    assert (p.sender_ip, p.target_mac, p.target_ip, p.eth_dst, p.vlan) == (
        "0.0.0.0", "00:00:00:00:00:00", "10.0.0.151", "ff:ff:ff:ff:ff:ff", None)


def test_tagged_probe():
    f = arp.build_probe(BR, "192.168.50.151", vlan=20)
    assert len(f) == 60
    assert f[12:14] == b"\x81\x00"
    assert struct.unpack("!H", f[14:16])[0] & 0x0FFF == 20
    assert f[16:18] == b"\x08\x06"
    p = arp.parse(f)
    assert p.vlan == 20 and p.is_probe and p.target_ip == "192.168.50.151"


@pytest.mark.parametrize("vlan", [0, 4095, -1, 5000])
def test_build_rejects_invalid_vlan(vlan):
    with pytest.raises(ValueError):
        arp.build_probe(BR, "10.0.0.1", vlan=vlan)


def test_aux_vlan_from_kernel_metadata():
    f = arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0")
    assert arp.parse(f).vlan is None
    assert arp.parse(f, aux_vlan=30).vlan == 30
    assert arp.parse(f, aux_vlan=0).vlan is None            # VID 0: priority only


def test_vid0_priority_tag_means_untagged():
    f = arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0")
    tagged = f[:12] + struct.pack("!HH", 0x8100, (5 << 13) | 0) + f[12:]
    p = arp.parse(tagged)
    assert p is not None and p.vlan is None and p.sender_ip == "10.0.0.151"


def test_pcp_bits_do_not_change_vid():
    f = arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0")
    tagged = f[:12] + struct.pack("!HH", 0x8100, (7 << 13) | (1 << 12) | 42) + f[12:]
    assert arp.parse(tagged).vlan == 42


def test_double_tag_rejected():
    inner = arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0", vlan=20)
    qinq = inner[:12] + struct.pack("!HH", 0x88A8, 100) + inner[12:]
    assert arp.parse(qinq) is None
    qq = inner[:12] + struct.pack("!HH", 0x8100, 100) + inner[12:]
    assert arp.parse(qq) is None
    # kernel already stripped the outer tag into auxdata, inner one still in the frame
    assert arp.parse(inner, aux_vlan=100) is None


def test_reply_properties():
    f = arp.build_reply(SQUAT, "10.0.0.151", BR, "0.0.0.0")
    p = arp.parse(f)
    assert p.op == arp.ARP_REPLY
    assert (p.sender_mac, p.sender_ip, p.target_mac, p.eth_src, p.eth_dst) == (
        SQUAT, "10.0.0.151", BR, SQUAT, BR)
    assert not p.is_probe and not p.is_announcement


def test_announcement_properties():
    p = arp.parse(arp.build_announcement(SQUAT, "10.0.0.151", vlan=7))
    assert p.op == arp.ARP_REQUEST and p.is_announcement and not p.is_probe
    assert p.sender_ip == p.target_ip == "10.0.0.151" and p.vlan == 7


def test_ordinary_request_properties():
    p = arp.parse(arp.build_request(SQUAT, "10.0.0.9", "10.0.0.151"))
    assert p.op == arp.ARP_REQUEST and not p.is_probe and not p.is_announcement
    assert (p.sender_ip, p.target_ip) == ("10.0.0.9", "10.0.0.151")


def test_uppercase_and_dash_macs_normalised():
    p = arp.parse(arp.build_probe("02-AA-BB-CC-DD-EE", "10.0.0.1"))
    assert p.sender_mac == p.eth_src == "02:aa:bb:cc:dd:ee"


@pytest.mark.parametrize("mac", ["02:00:00:00:00", "02:00:00:00:00:00:00", "zz:00:00:00:00:00",
                                 "020:00:00:00:00:0", ""])
def test_bad_mac_rejected(mac):
    with pytest.raises(ValueError):
        arp.mac_to_bytes(mac)


@pytest.mark.parametrize("ip", ["10.0.0", "10.0.0.256", "a.b.c.d", "10.0.0.1.2", "", "1.2.3.-4"])
def test_bad_ip_rejected(ip):
    with pytest.raises(ValueError):
        arp.ip_to_bytes(ip)


def _probe() -> bytes:
    return arp.build_probe(BR, "10.0.0.1")


@pytest.mark.parametrize("frame", [
    b"",
    b"\xff" * 13,
    _probe()[:41],                                         # truncated ARP body
    _probe()[:12] + b"\x08\x00" + _probe()[14:],           # IPv4, not ARP
    _probe()[:14] + b"\x00\x06" + _probe()[16:],           # htype 6 (IEEE 802)
    _probe()[:16] + b"\x86\xdd" + _probe()[18:],           # ptype IPv6
    _probe()[:18] + b"\x08" + _probe()[19:],               # hlen 8
    _probe()[:19] + b"\x10" + _probe()[20:],               # plen 16
    _probe()[:20] + b"\x00\x03" + _probe()[22:],           # op 3 (RARP)
    _probe()[:12] + b"\x81\x00\x00",                       # tag cut short
])
def test_malformed_frames_are_none(frame):
    assert arp.parse(frame) is None


def test_unpadded_frame_still_parses():
    f = _probe()[:42]                                      # exactly header + ARP, no padding
    assert arp.parse(f) is not None

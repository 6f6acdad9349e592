"""ARP over Ethernet (optionally 802.1Q-tagged): build and parse frames.

Pure: bytes in, dataclasses out; no sockets. Field layout per RFC 826;
probe and announcement shapes per RFC 5227 section 2.1.1 and 2.3.
MACs are lower-case "aa:bb:cc:dd:ee:ff" strings and IPv4 addresses dotted
quads, the way an admin reads them in `ip neigh`.
"""
from __future__ import annotations

import struct
from phoenix_hook.records import dataclass

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
ZERO_IP = "0.0.0.0"
# Ethernet's minimum frame without FCS; the kernel does not pad raw-socket
# sends on virtual devices, so pad ourselves like a NIC would.
MIN_FRAME = 60
_ARP_HDR = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """One ARP packet as seen on the wire."""
    op: int                 # ARP_REQUEST or ARP_REPLY
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str
    eth_src: str            # Ethernet source, may differ from sender_mac
    eth_dst: str
    vlan: int | None        # 802.1Q VID, None when untagged

    @property
    def is_probe(self) -> bool:
        """RFC 5227 2.1.1: a request with sender IP 0.0.0.0."""
        return self.op == ARP_REQUEST and self.sender_ip == ZERO_IP

    @property
    def is_announcement(self) -> bool:
        """RFC 5227 2.3: sender IP equals target IP (gratuitous ARP)."""
        return self.sender_ip == self.target_ip and self.sender_ip != ZERO_IP


def mac_to_bytes(mac: str) -> bytes:
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {mac!r}") from None
    if any(len(p) not in (1, 2) for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def mac_to_str(raw: bytes) -> str:
    return raw.hex(":")


def ip_to_bytes(ip: str) -> bytes:
    parts = ip.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {ip!r}")
    return bytes(int(p) for p in parts)


def ip_to_str(raw: bytes) -> str:
    return "%d.%d.%d.%d" % tuple(raw)


def ethernet_header(dst: str, src: str, ethertype: int, vlan: int | None = None) -> bytes:
    """Destination, source, an 802.1Q tag when vlan is set, ethertype."""
    if vlan is None:
        tag = b""
    elif 1 <= vlan <= 4094:
        tag = struct.pack("!HH", ETH_P_8021Q, vlan)
    else:
        raise ValueError(f"VLAN tag {vlan} outside 1..4094")
    return mac_to_bytes(dst) + mac_to_bytes(src) + tag + struct.pack("!H", ethertype)


def build(op: int, *, eth_src: str, eth_dst: str, sender_mac: str, sender_ip: str,
          target_mac: str, target_ip: str, vlan: int | None = None) -> bytes:
    """Build one Ethernet frame carrying an ARP packet (RFC 826)."""
    arp = _ARP_HDR.pack(1, ETH_P_IP, 6, 4, op, mac_to_bytes(sender_mac), ip_to_bytes(sender_ip),
                        mac_to_bytes(target_mac), ip_to_bytes(target_ip))
    frame = ethernet_header(eth_dst, eth_src, ETH_P_ARP, vlan) + arp
    return frame.ljust(MIN_FRAME, b"\0")


def build_probe(src_mac: str, target_ip: str, vlan: int | None = None) -> bytes:
    """RFC 5227 2.1.1 probe: broadcast request, sender IP 0.0.0.0, target MAC zero."""
    return build(ARP_REQUEST, eth_src=src_mac, eth_dst=BROADCAST, sender_mac=src_mac,
                 sender_ip=ZERO_IP, target_mac=ZERO_MAC, target_ip=target_ip, vlan=vlan)


def build_request(src_mac: str, src_ip: str, target_ip: str, vlan: int | None = None) -> bytes:
    """Ordinary who-has request (used by the subnet scan)."""
    return build(ARP_REQUEST, eth_src=src_mac, eth_dst=BROADCAST, sender_mac=src_mac,
                 sender_ip=src_ip, target_mac=ZERO_MAC, target_ip=target_ip, vlan=vlan)


def build_reply(src_mac: str, src_ip: str, dst_mac: str, dst_ip: str,
                vlan: int | None = None) -> bytes:
    """Unicast is-at reply to dst (RFC 826)."""
    return build(ARP_REPLY, eth_src=src_mac, eth_dst=dst_mac, sender_mac=src_mac,
                 sender_ip=src_ip, target_mac=dst_mac, target_ip=dst_ip, vlan=vlan)


def build_announcement(src_mac: str, ip: str, vlan: int | None = None) -> bytes:
    """RFC 5227 2.3 announcement: a request with sender IP = target IP."""
    return build(ARP_REQUEST, eth_src=src_mac, eth_dst=BROADCAST, sender_mac=src_mac,
                 sender_ip=ip, target_mac=ZERO_MAC, target_ip=ip, vlan=vlan)


def unwrap_ethernet(frame: bytes, aux_vlan: int | None) -> tuple[int, int, int | None] | None:
    """(ethertype, payload offset, VLAN) of an Ethernet frame, one 802.1Q tag unwrapped.

    The kernel usually strips the 802.1Q header on receive and hands the tag
    over as PACKET_AUXDATA (REFERENCE section 4); the caller passes that as
    aux_vlan. An in-frame tag is honoured too. A frame with two tags (QinQ)
    is not ours to judge: None.
    """
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype not in (ETH_P_8021Q, ETH_P_8021AD):
        offset, vlan = 14, aux_vlan
    elif aux_vlan is not None or len(frame) < 18:
        return None
    else:
        ethertype = int.from_bytes(frame[16:18], "big")
        offset, vlan = 18, int.from_bytes(frame[14:16], "big") & 0x0FFF
    # A priority-tagged frame: VID 0 means "no VLAN" (802.1Q 9.6)
    return ethertype, offset, (vlan or None)


def parse(frame: bytes, aux_vlan: int | None = None) -> ArpPacket | None:
    """Parse an Ethernet frame; None unless it is a well-formed IPv4-over-Ethernet ARP."""
    head = unwrap_ethernet(frame, aux_vlan)
    if head is None:
        return None
    ethertype, offset, vlan = head
    if ethertype != ETH_P_ARP or len(frame) < offset + _ARP_HDR.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP_HDR.unpack_from(frame, offset)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4 or op not in (ARP_REQUEST, ARP_REPLY):
        return None
    return ArpPacket(op=op, sender_mac=mac_to_str(sha), sender_ip=ip_to_str(spa),
                     target_mac=mac_to_str(tha), target_ip=ip_to_str(tpa),
                     eth_src=mac_to_str(frame[6:12]), eth_dst=mac_to_str(frame[0:6]), vlan=vlan)

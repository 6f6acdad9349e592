"""IPv6 Neighbor Discovery over Ethernet (optionally 802.1Q-tagged): build and parse frames.

Pure: bytes in, dataclasses out; no sockets (the IPv6 twin of arp.py).
Message formats per RFC 4861 section 4.3 (Neighbor Solicitation), 4.4
(Neighbor Advertisement) and 4.6.1 (link-layer address options); the
Duplicate Address Detection probe per RFC 4862 section 5.4.2; the ICMPv6
checksum per RFC 4443 section 2.3 over the RFC 8200 section 8.1
pseudo-header. Extension headers are not followed: ND messages from
real stacks carry none, and one with them is not ours to judge.
MACs are lower-case "aa:bb:cc:dd:ee:ff", IPv6 addresses in RFC 5952
compressed form ("fd00::151"), as `ip -6 neigh` shows them.
"""
from __future__ import annotations

import ipaddress
import struct
from phoenix_hook.records import dataclass

from phoenix_hook.net import arp
from phoenix_hook.net.arp import mac_to_bytes, mac_to_str

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80, 0x40, 0x20     # RFC 4861 4.4 flag bits
HOP_LIMIT = 255
UNSPECIFIED = "::"
ALL_NODES = "ff02::1"
_IPV6_HDR = struct.Struct("!IHBB16s16s")     # version/class/flow, payload length, next header, hop limit
_ND_HDR = struct.Struct("!BBHB3s16s")        # type, code, checksum, flags, reserved, target
_SOLICITED_NODE = ipaddress.IPv6Network("ff02::1:ff00:0/104")


@dataclass(frozen=True, slots=True)
class NdpPacket:
    """One Neighbor Solicitation or Advertisement as seen on the wire."""
    type: int                   # ND_NEIGHBOR_SOLICIT or ND_NEIGHBOR_ADVERT
    target: str                 # the address asked about / advertised
    ip_src: str
    ip_dst: str
    eth_src: str
    eth_dst: str
    vlan: int | None            # 802.1Q VID, None when untagged
    src_lladdr: str | None = None   # source link-layer address option (type 1)
    tgt_lladdr: str | None = None   # target link-layer address option (type 2)
    flags: int = 0              # NA: NA_ROUTER | NA_SOLICITED | NA_OVERRIDE; NS: 0

    @property
    def is_ns(self) -> bool:
        return self.type == ND_NEIGHBOR_SOLICIT

    @property
    def is_na(self) -> bool:
        return self.type == ND_NEIGHBOR_ADVERT

    @property
    def is_dad(self) -> bool:
        """RFC 4862 5.4.2: a solicitation from the unspecified address is a DAD probe."""
        return self.is_ns and self.ip_src == UNSPECIFIED

    @property
    def link_mac(self) -> str:
        """The MAC this message speaks for: the link-layer option (target for an NA,
        source for an NS) when present, else the Ethernet source (RFC 4861 4.3, 4.4)."""
        opt = self.tgt_lladdr if self.is_na else self.src_lladdr
        return opt or self.eth_src


def ip6_to_bytes(ip: str) -> bytes:
    try:
        a = ipaddress.IPv6Address(ip)
    except ValueError:
        raise ValueError(f"not an IPv6 address: {ip!r}") from None
    if a.scope_id:
        raise ValueError(f"not an IPv6 address without a zone: {ip!r}")
    return a.packed


def ip6_to_str(raw: bytes) -> str:
    return ipaddress.IPv6Address(raw).compressed


def solicited_node(ip: str) -> str:
    """RFC 4291 2.7.1: ff02::1:ff00:0/104 plus the low 24 bits of the address."""
    return ip6_to_str(bytes.fromhex("ff0200000000000000000001ff") + ip6_to_bytes(ip)[13:])


def multicast_mac(group: str) -> str:
    """RFC 2464 7: an IPv6 multicast group's Ethernet address is 33:33 + its low 32 bits."""
    return mac_to_str(b"\x33\x33" + ip6_to_bytes(group)[12:])


def checksum(src: bytes, dst: bytes, icmp: bytes) -> int:
    """The ICMPv6 checksum (RFC 4443 2.3) of icmp (its checksum field zero or not: the
    result for a message whose field holds the right value is 0)."""
    pseudo = src + dst + struct.pack("!IxxxB", len(icmp), IPPROTO_ICMPV6)
    data = pseudo + icmp
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _option(kind: int, mac: str) -> bytes:
    return struct.pack("!BB", kind, 1) + mac_to_bytes(mac)      # RFC 4861 4.6.1, Ethernet: length 1


def build(nd_type: int, *, eth_src: str, eth_dst: str, ip_src: str, ip_dst: str, target: str,
          flags: int = 0, src_lladdr: str | None = None, tgt_lladdr: str | None = None,
          vlan: int | None = None, hop_limit: int = HOP_LIMIT) -> bytes:
    """Build one Ethernet frame carrying an NS or NA (RFC 4861 4.3 / 4.4)."""
    src, dst = ip6_to_bytes(ip_src), ip6_to_bytes(ip_dst)
    opts = b""
    if src_lladdr is not None:
        opts += _option(OPT_SOURCE_LLADDR, src_lladdr)
    if tgt_lladdr is not None:
        opts += _option(OPT_TARGET_LLADDR, tgt_lladdr)
    body = _ND_HDR.pack(nd_type, 0, 0, flags, b"\0\0\0", ip6_to_bytes(target)) + opts
    body = body[:2] + struct.pack("!H", checksum(src, dst, body)) + body[4:]
    ip = _IPV6_HDR.pack(6 << 28, len(body), IPPROTO_ICMPV6, hop_limit, src, dst)
    return arp.ethernet_header(eth_dst, eth_src, ETH_P_IPV6, vlan) + ip + body


def build_dad_probe(src_mac: str, target: str, vlan: int | None = None) -> bytes:
    """RFC 4862 5.4.2 DAD probe: an NS from :: to the target's solicited-node group,
    hop limit 255, and no source link-layer option (RFC 4861 4.3 forbids one from ::)."""
    group = solicited_node(target)
    return build(ND_NEIGHBOR_SOLICIT, eth_src=src_mac, eth_dst=multicast_mac(group), ip_src=UNSPECIFIED,
                 ip_dst=group, target=target, vlan=vlan)


def build_advert(src_mac: str, target: str, vlan: int | None = None, ip_dst: str = ALL_NODES,
                 flags: int = NA_OVERRIDE) -> bytes:
    """The NA a node holding target sends in answer to a DAD probe (RFC 4862 5.4.3:
    to all-nodes, Solicited flag clear) or unprompted (RFC 4861 7.2.6), with its MAC
    in the target link-layer option. Used by the lab responder and the tests."""
    dst_mac = multicast_mac(ip_dst) if ipaddress.IPv6Address(ip_dst).is_multicast else None
    if dst_mac is None:
        raise ValueError("build_advert sends to a multicast group only")
    return build(ND_NEIGHBOR_ADVERT, eth_src=src_mac, eth_dst=dst_mac, ip_src=target, ip_dst=ip_dst,
                 target=target, flags=flags, tgt_lladdr=src_mac, vlan=vlan)


def parse(frame: bytes, aux_vlan: int | None = None) -> NdpPacket | None:
    """Parse an Ethernet frame; None unless it is a valid NS or NA (RFC 4861 7.1.1, 7.1.2).

    A message that fails the RFC's validity checks (hop limit 255, checksum,
    code 0, length, a unicast target, options of non-zero length, the DAD
    and multicast-NA rules) is silently discarded there, and so here: no
    garbage is ever taken for a claim. Never raises. The VLAN is the
    in-frame 802.1Q tag or aux_vlan (the tag the kernel moved into
    PACKET_AUXDATA, REFERENCE section 4), as in arp.parse.
    """
    try:
        return _parse(frame, aux_vlan)
    except (ValueError, struct.error, IndexError):      # belt and braces: garbage is None
        return None


def _parse(frame: bytes, aux_vlan: int | None) -> NdpPacket | None:
    head = arp.unwrap_ethernet(frame, aux_vlan)
    if head is None:
        return None
    ethertype, offset, vlan = head
    if ethertype != ETH_P_IPV6 or len(frame) < offset + _IPV6_HDR.size:
        return None
    vtf, plen, nh, hops, src, dst = _IPV6_HDR.unpack_from(frame, offset)
    if vtf >> 28 != 6 or nh != IPPROTO_ICMPV6 or hops != HOP_LIMIT:
        return None                 # hop limit 255: it was sent on this link (RFC 4861 7.1.1)
    start = offset + _IPV6_HDR.size
    if plen < _ND_HDR.size or len(frame) < start + plen:
        return None                 # frames may be padded after the payload, never short
    icmp = bytes(frame[start:start + plen])
    nd_type, code, _csum, flags, _res, target = _ND_HDR.unpack_from(icmp)
    if nd_type not in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT) or code != 0:
        return None
    if checksum(src, dst, icmp) != 0:
        return None
    t = ipaddress.IPv6Address(target)
    if t.is_multicast:
        return None
    sll = tll = None
    pos = _ND_HDR.size
    while pos < len(icmp):
        if pos + 2 > len(icmp):
            return None
        kind, length = icmp[pos], icmp[pos + 1]
        if length == 0 or pos + 8 * length > len(icmp):
            return None             # a zero-length option: discard (RFC 4861 7.1.1)
        if kind == OPT_SOURCE_LLADDR and sll is None:
            sll = mac_to_str(icmp[pos + 2:pos + 8])
        elif kind == OPT_TARGET_LLADDR and tll is None:
            tll = mac_to_str(icmp[pos + 2:pos + 8])
        pos += 8 * length           # unknown options are skipped (RFC 4861 4.6)
    ip_src, ip_dst = ip6_to_str(src), ip6_to_str(dst)
    dst_a = ipaddress.IPv6Address(dst)
    if nd_type == ND_NEIGHBOR_SOLICIT:
        flags = 0
        if ip_src == UNSPECIFIED and (dst_a not in _SOLICITED_NODE or sll is not None):
            return None             # RFC 4861 7.1.1: DAD probes go to a solicited-node group, no SLLA
    elif dst_a.is_multicast and flags & NA_SOLICITED:
        return None                 # RFC 4861 7.1.2: a multicast NA is never "solicited"
    return NdpPacket(type=nd_type, target=t.compressed, ip_src=ip_src, ip_dst=ip_dst,
                     eth_src=mac_to_str(frame[6:12]), eth_dst=mac_to_str(frame[0:6]), vlan=vlan,
                     src_lladdr=sll, tgt_lladdr=tll,
                     flags=flags & (NA_ROUTER | NA_SOLICITED | NA_OVERRIDE))

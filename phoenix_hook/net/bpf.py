"""Classic BPF programs for the watch: keep every frame that cannot matter out of Python.

Pure: address sets in, the bytes of a `struct sock_filter[]` out; wire.py
attaches them (SO_ATTACH_FILTER). The watch hears a whole bridge in
promiscuous mode, so on a busy LAN most ARP is about addresses no guest
has; this program drops those frames in the kernel, and the watch only
wakes for frames that speak for a watched address:

- ARP (untagged or with one in-frame 802.1Q tag) whose sender IP is in
  the IPv4 set, or an RFC 5227 probe (sender IP 0.0.0.0) whose target IP
  is in it;
- ICMPv6 Neighbor Advertisements whose target is in the IPv6 set; Neighbor
  Solicitations whose source address is in it, or, from :: (RFC 4862 DAD),
  whose target is. IPv6 addresses are matched on their low 32 bits only:
  a filter, not a judge (watch/rules.py decides on the whole address).

Our own outgoing frames (PACKET_OUTGOING) are dropped as in wire.py's
generic filter. A set is searched as a balanced tree of unsigned compares
(a few instructions per frame for thousands of addresses). Classic BPF
allows at most BPF_MAXINSNS (4096) instructions and 8-bit conditional jump
offsets: far jumps use `ja` (32-bit), every leaf ends in its own `ret`.
A set too large for that gives None, and the caller falls back to the
generic ARP/ND filter (the rules still decide correctly, only with more
frames reaching Python).
"""
from __future__ import annotations

import ipaddress
import struct

BPF_MAXINSNS = 4096
ACCEPT = 0xFFFF            # bytes of the frame kept (all of an ARP/ND frame)
LEAF = 8                   # values compared linearly at a leaf of the tree

# opcodes (linux/filter.h, linux/bpf_common.h)
LD_W_ABS, LD_H_ABS = 0x20, 0x28
LD_W_IND, LD_B_IND = 0x40, 0x50
LDX_IMM = 0x01
JA, JEQ, JGT = 0x05, 0x15, 0x25
RET = 0x06
SKF_AD_PKTTYPE = (-0x1000 + 4) & 0xFFFFFFFF
PACKET_OUTGOING = 4
ETH_P_ARP, ETH_P_IPV6, ETH_P_8021Q = 0x0806, 0x86DD, 0x8100
IPPROTO_ICMPV6, NS, NA = 58, 135, 136

# Offsets from the start of the frame, before the optional 4-byte tag (held in X).
ARP_SPA, ARP_TPA = 28, 38                  # 14 + 14, 14 + 24
IP6_NEXT, IP6_SRC = 20, 22                 # 14 + 6, 14 + 8
IP6_SRC_LOW = IP6_SRC + 12
ICMP6_TYPE, ND_TARGET_LOW = 54, 74         # 14 + 40, 14 + 40 + 8 + 12

Insn = tuple  # (code, jt, jf, k)


def ipv4_key(ip: str) -> int:
    """The value `ld [x + off]` loads for this address (network order, as an unsigned int)."""
    return int(ipaddress.IPv4Address(ip))


def ipv6_key(ip: str) -> int:
    """The low 32 bits of an IPv6 address, as `ld` loads them."""
    return int(ipaddress.IPv6Address(ip)) & 0xFFFFFFFF


def _set_tree(values: list[int]) -> list[Insn]:
    """Instructions that return ACCEPT when A is in values (sorted, unique), else 0.

    A leaf of up to LEAF values: `jeq v, <to accept>, 0` each, then `ret 0`,
    `ret ACCEPT`. An inner node: `jgt pivot, 0, 1` / `ja <right>` / left /
    right, where left holds the values <= pivot: every jump is either short
    or a `ja`.
    """
    if len(values) <= LEAF:
        k = len(values)
        out = [(JEQ, k - i, 0, v) for i, v in enumerate(values)]
        return out + [(RET, 0, 0, 0), (RET, 0, 0, ACCEPT)]
    mid = len(values) // 2
    left, right = _set_tree(values[:mid]), _set_tree(values[mid:])
    return [(JGT, 0, 1, values[mid - 1]), (JA, 0, 0, len(left))] + left + right


def watch_program(ipv4s, ipv6s) -> list[Insn] | None:
    """The filter for these watched addresses, or None when it would not fit in BPF_MAXINSNS."""
    t4 = _set_tree(sorted({ipv4_key(a) for a in ipv4s}))
    t6 = _set_tree(sorted({ipv6_key(a) for a in ipv6s}))
    head: list[Insn] = [
        (LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),   # 0
        (JEQ, 0, 1, PACKET_OUTGOING),       # 1
        (RET, 0, 0, 0),                     # 2 our own frames
        (LDX_IMM, 0, 0, 0),                 # 3
        (LD_H_ABS, 0, 0, 12),               # 4
        (JEQ, 0, 2, ETH_P_8021Q),           # 5 untagged -> 8
        (LDX_IMM, 0, 0, 4),                 # 6
        (LD_H_ABS, 0, 0, 16),               # 7
        (JEQ, 0, 1, ETH_P_ARP),             # 8
        (JA, 0, 0, 0),                      # 9 -> ARP (patched below)
        (JEQ, 0, 1, ETH_P_IPV6),            # 10
        (JA, 0, 0, 0),                      # 11 -> IPv6 (patched below)
        (RET, 0, 0, 0),                     # 12 neither
    ]
    arp = [
        (LD_W_IND, 0, 0, ARP_SPA),          # sender IP
        (JEQ, 0, 1, 0),                     # 0.0.0.0: a probe (RFC 5227 2.1.1) ...
        (LD_W_IND, 0, 0, ARP_TPA),          # ... judged by its target
    ] + t4
    ip6 = [
        (LD_B_IND, 0, 0, IP6_NEXT),         # 0
        (JEQ, 1, 0, IPPROTO_ICMPV6),        # 1 -> 3
        (RET, 0, 0, 0),                     # 2
        (LD_B_IND, 0, 0, ICMP6_TYPE),       # 3
        (JEQ, 0, 2, NA),                    # 4 not NA -> 7
        (LD_W_IND, 0, 0, ND_TARGET_LOW),    # 5 NA: its target
        (JA, 0, 0, 13),                     # 6 -> 20 (tree)
        (JEQ, 1, 0, NS),                    # 7 NS -> 9
        (RET, 0, 0, 0),                     # 8
        # NS from :: (all four words zero: DAD, RFC 4862 5.4.2): judged by its target;
        # any other NS by its source
        (LD_W_IND, 0, 0, IP6_SRC),          # 9
        (JEQ, 0, 8, 0),                     # 10 -> 19
        (LD_W_IND, 0, 0, IP6_SRC + 4),      # 11
        (JEQ, 0, 6, 0),                     # 12 -> 19
        (LD_W_IND, 0, 0, IP6_SRC + 8),      # 13
        (JEQ, 0, 4, 0),                     # 14 -> 19
        (LD_W_IND, 0, 0, IP6_SRC_LOW),      # 15
        (JEQ, 0, 2, 0),                     # 16 -> 19
        (LD_W_IND, 0, 0, ND_TARGET_LOW),    # 17 DAD: the target
        (JA, 0, 0, 1),                      # 18 -> 20 (tree)
        (LD_W_IND, 0, 0, IP6_SRC_LOW),      # 19 the source
    ] + t6
    arp_at = len(head)
    ip6_at = arp_at + len(arp)
    head[9] = (JA, 0, 0, arp_at - 10)
    head[11] = (JA, 0, 0, ip6_at - 12)
    prog = head + arp + ip6
    if len(prog) > BPF_MAXINSNS:
        return None
    return prog


def assemble(prog: list[Insn]) -> bytes:
    """`struct sock_filter[]` as the kernel reads it: u16 code, u8 jt, u8 jf, u32 k."""
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)

"""Address sanity rules shared by preflight (plan.py) and audit (audit.py). Pure.

IPv4 only, on dotted quads that are already validated: integer arithmetic,
since audit runs these for every NIC of the cluster.
"""
from __future__ import annotations

import socket
from functools import lru_cache


def _int(address: str) -> int:
    """A dotted-quad IPv4 (already validated) as an int; C speed, unlike ipaddress."""
    return int.from_bytes(socket.inet_aton(address), "big")


def _dotted(n: int) -> str:
    return socket.inet_ntoa(n.to_bytes(4, "big"))


def address_problems(address: str, prefixlen: int, gw: str | None) -> list[tuple[str, str]]:
    """(kind, words) for an address that cannot work in its own subnet.

    RFC 3021: a /31 has no network or broadcast address, a /32 none at all;
    a /32 with a gateway outside it is PVE's routed setup (the gateway is
    reached on-link), so it is not flagged. Integer arithmetic: audit runs
    this for every NIC of the cluster.
    """
    out = []
    a = _int(address)
    mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
    net = a & mask
    subnet = f"{_dotted(net)}/{prefixlen}"
    if prefixlen <= 30:
        if a == net:
            out.append(("network-address", f"{address} is the network address of {subnet}"))
        elif a == net | (~mask & 0xFFFFFFFF):
            out.append(("broadcast-address", f"{address} is the broadcast address of {subnet}"))
    if gw:
        g = _int(gw)
        if g == a:
            out.append(("gateway-address", f"{address} is its own gateway (gw={gw})"))
        elif prefixlen < 32 and g & mask != net:
            out.append(("gateway-outside-subnet", f"gateway {gw} is outside {address}'s subnet {subnet}"))
    return out


@lru_cache(maxsize=64)
def _range_ints(ranges) -> tuple:
    return tuple((_int(lo), _int(hi), lo, hi) for lo, hi in ranges)


def dhcp_pool(address: str, ranges) -> tuple[str, str] | None:
    """The DHCP range (lo, hi) the address is inside, or None."""
    if not ranges:
        return None
    a = _int(address)
    for lo, hi, slo, shi in _range_ints(tuple(tuple(r) for r in ranges)):
        if lo <= a <= hi:
            return slo, shi
    return None

"""The host's neighbour table (ARP and IPv6 ND) and its own addresses, as iproute2 reports them.

Pure parsers that never raise (garbage in, fewer entries out), and two thin
readers at the bottom that run `ip -j` (iproute2's JSON, ip-neighbour(8),
ip-address(8)) and fall back to /proc/net/arp (IPv4 only; the format of
net/ipv4/arp.c arp_seq_show) when `ip` is missing or fails.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from phoenix_hook.records import dataclass

# /proc/net/arp flags, include/uapi/linux/if_arp.h
ATF_COM, ATF_PERM = 0x02, 0x04
_ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Neighbour:
    ip: str                       # normalised: "10.0.0.5", "fe80::1"
    family: int                   # 4 or 6
    mac: str | None               # lower-case; None while unresolved (INCOMPLETE, FAILED)
    dev: str | None
    state: tuple[str, ...] = ()   # NUD states as ip prints them: ("REACHABLE",), ("STALE",)
    router: bool = False


@dataclass(frozen=True)
class HostAddress:
    ifname: str
    ip: str
    prefixlen: int
    mac: str | None
    family: int

    @property
    def network(self):
        return ipaddress.ip_interface(f"{self.ip}/{self.prefixlen}").network


def _ip(value) -> tuple[str, int] | None:
    if not isinstance(value, str):
        return None
    try:
        a = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    return str(a), a.version


def _mac(value) -> str | None:
    if not isinstance(value, str):
        return None
    parts = value.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        return None
    mac = ":".join(parts)
    return None if mac == _ZERO_MAC else mac


def _json_list(text) -> list:
    try:
        data = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return []
    return data if isinstance(data, list) else []


def parse_ip_neigh_json(text: str) -> list[Neighbour]:
    """`ip -j neigh show`: [{"dst","dev","lladdr","state":[..],"router":null?}, ...]."""
    out = []
    for e in _json_list(text):
        if not isinstance(e, dict):
            continue
        got = _ip(e.get("dst"))
        if got is None:
            continue
        state = e.get("state")
        state = tuple(s for s in state if isinstance(s, str)) if isinstance(state, list) else ()
        dev = e.get("dev") if isinstance(e.get("dev"), str) else None
        out.append(Neighbour(ip=got[0], family=got[1], mac=_mac(e.get("lladdr")), dev=dev,
                             state=state, router="router" in e))
    return out


def parse_proc_arp(text: str) -> list[Neighbour]:
    """/proc/net/arp: 'IP address  HW type  Flags  HW address  Mask  Device', one header line."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 6:
            continue
        got = _ip(f[0])
        if got is None or got[1] != 4:
            continue
        try:
            flags = int(f[2], 16)
        except ValueError:
            continue
        mac = _mac(f[3]) if flags & ATF_COM else None
        state = "PERMANENT" if flags & ATF_PERM else "COMPLETE" if mac else "INCOMPLETE"
        out.append(Neighbour(ip=got[0], family=4, mac=mac, dev=f[5], state=(state,)))
    return out


def parse_ip_addr_json(text: str) -> list[HostAddress]:
    """`ip -j addr show`: [{"ifname","address"(MAC),"addr_info":[{"family","local","prefixlen"}]}]."""
    out = []
    for link in _json_list(text):
        if not isinstance(link, dict) or not isinstance(link.get("ifname"), str):
            continue
        mac = _mac(link.get("address"))
        infos = link.get("addr_info")
        for a in infos if isinstance(infos, list) else []:
            if not isinstance(a, dict):
                continue
            got = _ip(a.get("local"))
            plen = a.get("prefixlen")
            if got is None or not isinstance(plen, int) or isinstance(plen, bool):
                continue
            if not 0 <= plen <= (32 if got[1] == 4 else 128):
                continue
            out.append(HostAddress(ifname=link["ifname"], ip=got[0], prefixlen=plen, mac=mac,
                                   family=got[1]))
    return out


# -- readers (the edge) ------------------------------------------------------------
class NeighError(OSError):
    """Neither `ip` nor /proc could be read."""


def _ip_json(args) -> str | None:
    ip = shutil.which("ip") or next((p for p in ("/sbin/ip", "/usr/sbin/ip", "/bin/ip")
                                     if os.path.exists(p)), None)
    if ip is None:
        return None
    try:
        p = subprocess.run([ip, "-j", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def read_neighbours() -> tuple[list[Neighbour], str]:
    """(entries, "ip" | "/proc/net/arp")."""
    text = _ip_json(["neigh", "show"])
    if text is not None:
        return parse_ip_neigh_json(text), "ip"
    try:
        with open("/proc/net/arp") as f:
            return parse_proc_arp(f.read()), "/proc/net/arp"
    except OSError as exc:
        raise NeighError(exc.errno, f"cannot read the neighbour table: `ip -j neigh` failed and "
                                    f"/proc/net/arp: {exc.strerror}") from None


def read_addresses(dev: str | None = None) -> list[HostAddress] | None:
    """This host's addresses (of one device), or None when `ip` could not tell."""
    text = _ip_json(["addr", "show"] + (["dev", dev] if dev else []))
    return None if text is None else parse_ip_addr_json(text)

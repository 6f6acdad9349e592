"""Where a MAC sits: the bridge's forwarding database, and what PVE's port names say.

The bridge learns the port each source MAC arrived on; `bridge -j fdb show br
<bridge>` (iproute2, bridge(8)) lists it as
{"mac", "ifname" (the port), "vlan"?, "flags": [...], "master": <bridge>, "state"}.
Learned entries have state "" (or "stale"); "permanent" entries with a master
are the ports' own MACs (this host); entries without "master" are a device's
own table ("self") and say nothing about where a MAC sits.

Port names (REFERENCE section 11; pve-container LXC.pm, qemu-server,
pve-common Network.pm): veth<VMID>i<N> a container's netN, tap<VMID>i<N> a
VM's, fwpr<VMID>p<N> (and fwln<VMID>i<N> on the firewall bridge) a guest with
firewall=1. Any other port is a NIC, bond or VLAN device towards the LAN.

Pure parsers on top (any input, never raise); the reader at the bottom.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from phoenix_hook.records import dataclass

_GUEST_PORT = re.compile(r"^(veth|tap|fwpr|fwln)(\d+)[ip](\d+)$")


@dataclass(frozen=True)
class FdbEntry:
    mac: str
    port: str
    vlan: int | None
    permanent: bool          # the port's own MAC: this host


def guest_port(name: str) -> tuple[int, str] | None:
    """(VMID, "netN") for a port PVE made for a guest NIC, else None."""
    m = _GUEST_PORT.match(name or "")
    if not m:
        return None
    return int(m.group(2)), f"net{int(m.group(3))}"


def parse_fdb_json(text, bridge: str | None = None) -> list[FdbEntry]:
    """`bridge -j fdb show br <bridge>` -> the bridge's entries (master <bridge>)."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return []
    out = []
    for e in data if isinstance(data, list) else []:
        if not isinstance(e, dict):
            continue
        mac, port, master = e.get("mac"), e.get("ifname"), e.get("master")
        if not isinstance(mac, str) or not isinstance(port, str) or not isinstance(master, str):
            continue
        if bridge is not None and master != bridge:
            continue
        flags = e.get("flags") if isinstance(e.get("flags"), list) else []
        if "self" in flags:
            continue
        vlan = e.get("vlan")
        vlan = vlan if isinstance(vlan, int) and not isinstance(vlan, bool) and 0 < vlan < 4095 else None
        state = e.get("state") if isinstance(e.get("state"), str) else ""
        out.append(FdbEntry(mac=mac.lower(), port=port, vlan=vlan, permanent="permanent" in state))
    return out


def port_of(entries, mac: str, vlan: int | None = None) -> FdbEntry | None:
    """The entry for mac: the one in this VLAN first (VLAN-aware bridges learn per VLAN),
    else any; a learned entry before a permanent one."""
    mine = [e for e in entries if e.mac == mac.lower()]
    if not mine:
        return None
    mine.sort(key=lambda e: (e.vlan != vlan, e.permanent))
    return mine[0]


def read_fdb(bridge: str) -> list[FdbEntry] | None:
    """The bridge's forwarding database, None when `bridge` is missing or fails."""
    exe = shutil.which("bridge") or shutil.which("bridge", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if exe is None:
        return None
    try:
        p = subprocess.run([exe, "-j", "fdb", "show", "br", bridge], capture_output=True, text=True,
                           timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_fdb_json(p.stdout, bridge) if p.returncode == 0 else None

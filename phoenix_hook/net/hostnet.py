"""What this host's own network looks like: read from /sys and /proc, no sockets.

An edge module: the probe needs the bridge's MAC and state, the MACs of
every host interface (frames from them are our own), and the host's own
IPv4 and IPv6 addresses (Linux never answers a probe for an address its own
host holds, REFERENCE section 6, so those are checked here, not on the wire).
"""
from __future__ import annotations

import os
import re
from phoenix_hook.records import dataclass

SYS_NET = "/sys/class/net"
IFF_UP = 0x1
IFF_NOARP = 0x80


@dataclass(frozen=True)
class Link:
    name: str
    mac: str
    up: bool            # administratively up (IFF_UP)
    noarp: bool         # IFF_NOARP: the kernel will not do ARP here
    carrier: bool       # lower layer up: at least one bridge port is up
    is_bridge: bool
    vlan_filtering: bool
    uplinks: tuple = ()  # bridge ports that are not guest ports: ((name, carrier), ...)
    vlan_protocol: int = 0x8100   # a VLAN-aware bridge's tag: 802.1Q, or 802.1ad (0x88a8)


def read_sys(path: str) -> str | None:
    """A sysfs/procfs value, stripped; None when it is not there (or not readable)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


_read = read_sys


def link(name: str) -> Link | None:
    """The interface's state, or None when there is no such interface."""
    if not name or "/" in name or name in (".", ".."):
        return None
    base = os.path.join(SYS_NET, name)
    mac = _read(os.path.join(base, "address"))
    if mac is None:
        return None
    flags = int(_read(os.path.join(base, "flags")) or "0", 16)
    # reading 'carrier' fails with EINVAL while the link is admin-down
    carrier = _read(os.path.join(base, "carrier")) == "1"
    is_bridge = os.path.isdir(os.path.join(base, "bridge"))
    vf = _read(os.path.join(base, "bridge", "vlan_filtering")) == "1"
    uplinks = ()
    if is_bridge:
        try:
            ports = sorted(os.listdir(os.path.join(base, "brif")))
        except OSError:
            ports = []
        uplinks = tuple((p, _read(os.path.join(SYS_NET, p, "carrier")) == "1")
                        for p in ports if not is_guest_port(p) and not is_probe_port(p))
    try:
        proto = int(_read(os.path.join(base, "bridge", "vlan_protocol")) or "0x8100", 16)
    except ValueError:
        proto = 0x8100
    return Link(name=name, mac=mac.lower(), up=bool(flags & IFF_UP), noarp=bool(flags & IFF_NOARP),
                carrier=carrier, is_bridge=is_bridge, vlan_filtering=vf, uplinks=uplinks,
                vlan_protocol=proto)


_GUEST_PORT = re.compile(r"^(veth|tap|fwpr|fwln)\d+[ip]\d+$")


def is_guest_port(name: str) -> bool:
    """PVE's names for guest-side bridge ports: veth<vmid>i<N> (LXC, pve-container
    LXC.pm), tap<vmid>i<N> (QEMU), fwpr<vmid>p<N> / fwln<vmid>i<N> (firewall
    bridge, pve-common Network.pm). Every other port leads to the LAN."""
    return bool(_GUEST_PORT.match(name))


# phoenix-hook's own temporary probe ports (net/probeport.py): "vethphx" + the
# owner's PID and an index in base 36 on the bridge, "phxq" + the same on the
# host end. "veth" because PVE's ifupdown2 leaves ports matching ^(tap|veth|fwpr)
# on a bridge at ifreload (bridge-ports-condone-regex default); never
# veth<digits>i<digits>, which PVE and is_guest_port take for a guest's port.
PROBE_PORT = re.compile(r"^(vethphx|phxq)([0-9a-z]{5})([0-9a-z])$")


def is_probe_port(name: str) -> bool:
    """One of phoenix-hook's temporary probe ports (either end): not an uplink, not a guest."""
    return bool(PROBE_PORT.match(name))


def parse_vlan_config(text: str) -> dict[str, tuple[int, str]]:
    """{VLAN device: (VID, lower device)} from /proc/net/vlan/config. Pure.

    Format (net/8021q/vlanproc.c vlan_seq_show): two header lines, then
    "<name> | <vid> | <lower>" per device. Lines that cannot be read are skipped.
    """
    out: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        parts = [x.strip() for x in line.split("|")]
        if len(parts) != 3 or not parts[1].isdigit() or not parts[0] or not parts[2]:
            continue
        vid = int(parts[1])
        if 1 <= vid <= 4094:
            out[parts[0]] = (vid, parts[2])
    return out


def vlan_devices() -> dict[str, tuple[int, str]]:
    """Every 802.1Q device of this host (netns): {name: (VID, lower device)}.

    No /proc/net/vlan/config means the 8021q module is not loaded, so there are none.
    """
    return parse_vlan_config(_read("/proc/net/vlan/config") or "")


def vlan_taps(link: Link | None, vlan_devs: dict, vid: int) -> tuple[str, ...]:
    """Uplink ports of a bridge that carry an 802.1Q device for vid (an admin's eno1.N). Pure.

    The kernel hands a frame tagged vid arriving on such a port to the VLAN
    device before the bridge sees it (vlan_do_receive runs before the
    bridge's rx handler; REFERENCE section 4), so answers from the LAN in
    that VLAN never reach the bridge: they are heard on the port itself,
    whose packet taps run before that hand-over (also while the VLAN device
    is down and drops them).
    """
    if link is None or not link.is_bridge:
        return ()
    ports = {name for name, _carrier in link.uplinks}
    return tuple(sorted({lower for v, lower in vlan_devs.values() if v == vid and lower in ports}))


def all_macs() -> frozenset[str]:
    """MACs of every interface of this host (netns): frames from them are ours."""
    macs = set()
    try:
        names = os.listdir(SYS_NET)
    except OSError:
        return frozenset()
    for name in names:
        mac = _read(os.path.join(SYS_NET, name, "address"))
        if mac and mac != "00:00:00:00:00:00":
            macs.add(mac.lower())
    return frozenset(macs)


def parse_fib_trie(text: str) -> dict[str, None]:
    """Local IPv4 addresses from /proc/net/fib_trie (the '/32 host LOCAL' leaves).

    Pure; the order of first appearance is kept. The format is the kernel's
    net/ipv4/fib_trie.c fib_trie_seq_show: a '|-- A.B.C.D' leaf line followed
    by '/LEN SCOPE TYPE' lines.
    """
    found: dict[str, None] = {}
    leaf = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|--"):
            leaf = s[3:].strip()
        elif leaf and s.startswith("/32") and s.endswith("LOCAL") and "host" in s:
            if not leaf.startswith("127."):
                found[leaf] = None
    return found


def local_ipv4() -> frozenset[str]:
    """Every IPv4 address configured on this host (netns), loopback excluded."""
    text = _read("/proc/net/fib_trie") or ""
    return frozenset(parse_fib_trie(text))


IFA_F_DADFAILED = 0x08


def _if_inet6_rows(text: str):
    """(IPv6Address, prefix length as hex text, interface) of each row of /proc/net/if_inet6
    the host really holds. Format per the kernel's net/ipv6/addrconf.c if6_seq_show: 32 hex
    digits of address, then ifindex, prefix length, scope and flags in hex, then the
    interface name. Loopback (::1), :: and addresses whose DAD failed (the host does not
    hold them, IFA_F_DADFAILED) are left out; lines that cannot be read are skipped."""
    import ipaddress
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6 or len(parts[0]) != 32:
            continue
        try:
            addr = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
            flags = int(parts[4], 16)
        except ValueError:
            continue
        if addr.is_loopback or addr.is_unspecified or flags & IFA_F_DADFAILED:
            continue
        yield addr, parts[2], parts[5]


def parse_if_inet6(text: str) -> dict[tuple[str, str], None]:
    """(address, interface) of every IPv6 address in /proc/net/if_inet6 (_if_inet6_rows).
    Pure; interface order and first appearance are kept."""
    return {(addr.compressed, ifname): None for addr, _plen, ifname in _if_inet6_rows(text)}


def local_ipv6() -> frozenset[tuple[str, str]]:
    """Every IPv6 address of this host (netns) with its interface, ::1 excluded.

    The interface matters for link-local addresses (fe80::/10): one on eno1
    says nothing about the segment behind vmbr0. As for IPv4, the host's
    own kernel never sees our raw DAD probe (it leaves by a raw socket), so
    its own addresses are found here, not on the wire.
    """
    text = _read("/proc/net/if_inet6") or ""
    return frozenset(parse_if_inet6(text))



RTF_UP, RTF_GATEWAY = 0x1, 0x2


def parse_proc_route(text: str) -> list[tuple[str, str]]:
    """(interface, "a.b.c.d/nn") of every on-link IPv4 route in /proc/net/route. Pure.

    On-link (up, no gateway, not the default route): the subnets the kernel
    reaches directly through the interface, i.e. the prefixes of its
    addresses (the kernel adds a route for each). Format per net/ipv4/
    fib_trie.c fib_route_seq_show: "Iface Destination Gateway Flags RefCnt
    Use Metric Mask ...", the addresses as a be32 printed as a host-order
    hex number. Lines that cannot be read are skipped.
    """
    import ipaddress
    import sys
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            dest, gw, flags, mask = (int(f[i], 16) for i in (1, 2, 3, 7))
            net = ipaddress.IPv4Network((int.from_bytes(dest.to_bytes(4, sys.byteorder), "big"),
                                         bin(mask).count("1")), strict=False)
        except (ValueError, OverflowError):
            continue
        if flags & RTF_UP and not flags & RTF_GATEWAY and gw == 0 and mask:
            out.append((f[0], str(net)))
    return out


def parse_if_inet6_networks(text: str) -> list[tuple[str, str]]:
    """(interface, "prefix/len") of every IPv6 address in /proc/net/if_inet6 (see
    parse_if_inet6), its network by the prefix length the address was given. Pure."""
    import ipaddress
    out = []
    for addr, plen, ifname in _if_inet6_rows(text):
        try:
            out.append((ifname, str(ipaddress.IPv6Network((addr, int(plen, 16)), strict=False))))
        except ValueError:
            continue
    return out


def ip_networks(ifname: str) -> list:
    """The IPv4 and IPv6 networks on interface ifname, from /proc (what `ip addr`'s
    prefixes say, without running ip: the hook names suspicious responders with them)."""
    import ipaddress
    nets = [n for dev, n in parse_proc_route(_read("/proc/net/route") or "") if dev == ifname]
    nets += [n for dev, n in parse_if_inet6_networks(_read("/proc/net/if_inet6") or "") if dev == ifname]
    return [ipaddress.ip_network(n) for n in dict.fromkeys(nets)]


def parse_bridge_vlans(text: str, bridge: str) -> dict[int, bool] | None:
    """{VID: egress untagged} of the bridge device itself ("self"), from `bridge -j vlan show`.

    Pure. Entries are {"ifname", "vlans": [{"vlan": N, "vlanEnd": M?, "flags": [...]}]};
    ranges appear with vlanEnd; "Egress Untagged" means frames of that VLAN
    reach the bridge device without a tag. None when the output cannot be read.
    """
    import json
    try:
        data = json.loads(text or "[]")
        vids: dict[int, bool] = {}
        for entry in data:
            if entry.get("ifname") != bridge:
                continue
            for v in entry.get("vlans", []):
                lo = int(v["vlan"])
                hi = int(v.get("vlanEnd", lo))
                untagged = "Egress Untagged" in (v.get("flags") or [])
                for vid in range(lo, hi + 1):
                    vids[vid] = untagged
        return vids
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def bridge_self_vlans(bridge: str) -> dict[int, bool] | None:
    """The VLANs a VLAN-aware bridge itself is a member of (REFERENCE section 4).

    A tagged frame the host sends on the bridge is dropped by the bridge's
    ingress filter unless its VID is in this list, so a probe there would
    go nowhere and look "free". None when it cannot be told.
    """
    import subprocess
    try:
        p = subprocess.run(["bridge", "-j", "vlan", "show", "dev", bridge], capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_bridge_vlans(p.stdout, bridge) if p.returncode == 0 else None


def ifindex(name: str) -> int | None:
    """The interface's index, or None when there is no such interface. A bridge deleted
    and created again under the same name gets a new index (the watch reopens it)."""
    if not name or "/" in name or name in (".", ".."):
        return None
    value = _read(os.path.join(SYS_NET, name, "ifindex"))
    return int(value) if value and value.isdigit() else None

"""Guests and their NICs, read from Proxmox VE config text. Pure.

Follows the config format of pve-container src/PVE/LXC/Config.pm
(parse_pct_config, the netN property string) and qemu-server
src/PVE/QemuServer.pm / QemuServer/Network.pm (netN, ipconfigN):
- everything before the first "[section]" line is the current config;
  "[pve:pending]" (LXC) and "[PENDING]" (QEMU) hold pending changes,
  "[special:cloudinit]" the last applied cloud-init values, any other
  "[name]" is a snapshot (REFERENCE section 3);
- a "netN" value is a comma-separated property string; unknown keys are
  ignored, never fatal, because newer PVE releases add keys.

Nothing here raises on bad input: a line that cannot be read becomes an
error on that NIC (or on the guest), so the caller can say exactly what is
wrong and never mistakes garbage for a conflict.
"""
from __future__ import annotations

import ipaddress
import re
from phoenix_hook.records import dataclass, field, replace

PENDING_SECTIONS = {"lxc": "pve:pending", "qemu": "PENDING"}
IP6_MODES = ("auto", "dhcp", "manual")   # ip6= values without a static address (LXC Config.pm)
MAX_NET = 32                      # net0..net31 (LXC Config.pm MAX_LXC_NETWORKS)
_KEY_RE = re.compile(r"^([a-z][a-z0-9_\-.]*)\s*:\s*(.*?)\s*$")
_SECTION_RE = re.compile(r"^\[([^\]]+)\]\s*$")
_NET_RE = re.compile(r"^net(\d+)$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_DIGITS_RE = re.compile(r"^[0-9]+$")   # ASCII only: str.isdigit() accepts '²', which int() rejects
_QEMU_MODELS = frozenset({
    "e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
    "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3",
})


@dataclass(frozen=True)
class Nic:
    """One guest network interface (netN) and its IPv4 and IPv6 configuration."""
    key: str                          # "net0"
    bridge: str | None = None
    hwaddr: str | None = None         # lower-case MAC
    ip: str | None = None             # raw ip= value: "10.0.0.151/24", "dhcp", "manual"
    address: str | None = None        # "10.0.0.151" when ip is static
    prefixlen: int | None = None
    gw: str | None = None
    ip6: str | None = None            # raw ip6= value: "fd00::151/64", "auto", "dhcp", "manual"
    tag: int | None = None            # 802.1Q VLAN, None = untagged
    name: str | None = None           # LXC interface name (eth0) / QEMU model
    error: str | None = None          # why this NIC cannot be checked
    address6: str | None = None       # "fd00::151" (RFC 5952 form) when ip6 is static
    prefixlen6: int | None = None

    @property
    def index(self) -> int:
        return int(self.key[3:])

    @property
    def ip_mode(self) -> str:
        """'static', 'dhcp', 'manual', 'none' or 'invalid'."""
        if self.error:
            return "invalid"
        if self.address:
            return "static"
        if self.ip in ("dhcp", "manual"):
            return self.ip
        return "none"

    @property
    def ip6_mode(self) -> str:
        """'static', 'auto', 'dhcp', 'manual', 'none' or 'invalid'."""
        if self.error:
            return "invalid"
        if self.address6:
            return "static"
        if self.ip6 in IP6_MODES:
            return self.ip6
        return "none"

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        if self.address is None or self.prefixlen is None:
            return None
        return ipaddress.IPv4Network(f"{self.address}/{self.prefixlen}", strict=False)


def label_for(gtype: str, vmid: int) -> str:
    """How PVE's GUI names a guest: "CT 951" for a container, "VM 120" for a VM."""
    return f"{'CT' if gtype == 'lxc' else 'VM'} {vmid}"


@dataclass(frozen=True)
class Guest:
    vmid: int
    type: str = "lxc"                 # "lxc" or "qemu"
    name: str | None = None           # LXC hostname / QEMU name
    node: str | None = None
    nics: tuple[Nic, ...] = ()
    template: bool = False
    hookscript: str | None = None
    pending: bool = False             # pending network changes were merged in
    errors: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return label_for(self.type, self.vmid)

    def describe(self, nic_key: str | None = None) -> str:
        """"template CT 910 (dashboard) net0 on node pve2": a guest named for a message."""
        kind = "template " if self.template else ""
        name = f" ({self.name})" if self.name else ""
        where = f" on node {self.node}" if self.node else ""
        return f"{kind}{self.label}{name}" + (f" {nic_key}" if nic_key else "") + where

    def nic(self, key: str) -> Nic | None:
        return next((n for n in self.nics if n.key == key), None)


def split_sections(text: str) -> tuple[dict[str, str], dict[str, dict[str, str]], list[str]]:
    """(current, {section: values}, unreadable lines). Later keys win, as in PVE."""
    current: dict[str, str] = {}
    sections: dict[str, dict[str, str]] = {}
    bad: list[str] = []
    target = current
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue              # '#' lines are the guest's description
        m = _SECTION_RE.match(line)
        if m:
            target = sections.setdefault(m.group(1), {})
            continue
        m = _KEY_RE.match(line)
        if m:
            target[m.group(1)] = m.group(2)
        elif target is current:
            bad.append(line[:80])
    return current, sections, bad


def parse_props(value: str, default_key: str | None = None) -> dict[str, str]:
    """A PVE property string "a=1,b=2" as a dict; a bare first item goes to default_key."""
    out: dict[str, str] = {}
    for i, part in enumerate(value.split(",")):
        part = part.strip()
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep:
            if i == 0 and default_key:
                out[default_key] = k
            continue
        out[k.strip()] = v.strip()
    return out


def _mac(value: str | None) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not _MAC_RE.match(value):
        return None, f"hwaddr={value!r} is not a MAC address"
    return value.lower(), None


def _tag(value: str | None) -> tuple[int | None, str | None]:
    if value is None or value == "":
        return None, None
    if not _DIGITS_RE.match(value) or not 1 <= int(value) <= 4094:
        return None, f"tag={value!r} is not a VLAN ID (1-4094)"
    return int(value), None


def _ipv4(ip: str | None, gw: str | None):
    """(address, prefixlen, error) for an ip= value per LXC Config.pm (ipv4/cidr|dhcp|manual)."""
    if ip is None or ip in ("dhcp", "manual"):
        return None, None, None
    addr, sep, plen = ip.partition("/")
    try:
        a = ipaddress.IPv4Address(addr)
        if not sep or not _DIGITS_RE.match(plen) or not 0 <= int(plen) <= 32:
            raise ValueError
    except ValueError:
        return None, None, f"ip={ip!r} is not dhcp, manual or an IPv4 address with /prefix"
    if a.is_unspecified or a.is_multicast or a.is_loopback or a == ipaddress.IPv4Address("255.255.255.255"):
        return None, None, f"ip={ip!r} is not a unicast host address"
    if gw is not None:
        try:
            ipaddress.IPv4Address(gw)
        except ValueError:
            return None, None, f"gw={gw!r} is not an IPv4 address"
    return str(a), int(plen), None


def _ipv6(ip6: str | None, gw6: str | None):
    """(address, prefixlen, error) for an ip6= value per LXC Config.pm (ipv6/cidr|auto|dhcp|manual).

    Link-local (fe80::/10) statics are allowed: DAD covers them too (RFC
    4862 5.4). A zone ("%eth0") is not part of a config address.
    """
    if ip6 is None or ip6 in IP6_MODES:
        return None, None, None
    addr, sep, plen = ip6.partition("/")
    try:
        if "%" in addr:
            raise ValueError
        a = ipaddress.IPv6Address(addr)
        if not sep or not _DIGITS_RE.match(plen) or not 0 <= int(plen) <= 128:
            raise ValueError
    except ValueError:
        return None, None, f"ip6={ip6!r} is not auto, dhcp, manual or an IPv6 address with /prefix"
    if a.is_unspecified or a.is_multicast or a.is_loopback or a.ipv4_mapped is not None:
        return None, None, f"ip6={ip6!r} is not a unicast host address"
    if gw6 is not None:
        try:
            if "%" in gw6:
                raise ValueError
            ipaddress.IPv6Address(gw6)
        except ValueError:
            return None, None, f"gw6={gw6!r} is not an IPv6 address"
    return a.compressed, int(plen), None


def parse_lxc_net(key: str, value: str) -> Nic:
    """An LXC netN line: name=,bridge=,hwaddr=,ip=,gw=,ip6=,tag=,... (LXC/Config.pm)."""
    p = parse_props(value)
    hwaddr, err_mac = _mac(p.get("hwaddr"))
    tag, err_tag = _tag(p.get("tag"))
    address, plen, err_ip = _ipv4(p.get("ip"), p.get("gw"))
    address6, plen6, err_ip6 = _ipv6(p.get("ip6"), p.get("gw6"))
    error = err_ip or err_ip6 or err_mac or err_tag
    if error is None and not p.get("name"):
        error = "name= is missing"
    if error:                     # a NIC we cannot read is never probed or compared
        address, plen, address6, plen6 = None, None, None, None
    return Nic(key=key, bridge=p.get("bridge") or None, hwaddr=hwaddr, ip=p.get("ip"),
               address=address, prefixlen=plen, gw=p.get("gw"), ip6=p.get("ip6"), tag=tag,
               name=p.get("name"), error=error, address6=address6, prefixlen6=plen6)


def parse_qemu_net(key: str, value: str, ipconfig: str | None) -> Nic:
    """A QEMU netN line (<model>=<MAC>,bridge=,tag=,...) with its cloud-init ipconfigN."""
    p = parse_props(value, default_key="model")
    model, mac = None, None
    for k, v in p.items():
        if k in _QEMU_MODELS:
            model, mac = k, v
            break
    if model is None and "model" in p:
        model, mac = p["model"], p.get("macaddr")
    hwaddr, err_mac = _mac(mac) if mac else (None, None)
    tag, err_tag = _tag(p.get("tag"))
    c = parse_props(ipconfig) if ipconfig else {}
    address, plen, err_ip = _ipv4(c.get("ip"), c.get("gw"))
    address6, plen6, err_ip6 = _ipv6(c.get("ip6"), c.get("gw6"))
    error = err_ip or err_ip6 or err_mac or err_tag
    if error is None and model is None:
        error = "no NIC model (virtio=, e1000=, ...)"
    if error:
        address, plen, address6, plen6 = None, None, None, None
    return Nic(key=key, bridge=p.get("bridge") or None, hwaddr=hwaddr, ip=c.get("ip"),
               address=address, prefixlen=plen, gw=c.get("gw"), ip6=c.get("ip6"), tag=tag,
               name=model, error=error, address6=address6, prefixlen6=plen6)


def merge_pending(current: dict[str, str], pending: dict[str, str]) -> dict[str, str]:
    """Current values with pending ones over them; 'delete: a,b' removes keys (PVE pending)."""
    merged = dict(current)
    for k, v in pending.items():
        if k != "delete":
            merged[k] = v
    for k in pending.get("delete", "").split(","):
        merged.pop(k.strip().lstrip("!"), None)
    return merged


def _net_keys(values: dict[str, str]) -> list[str]:
    keys = []
    for k in values:
        m = _NET_RE.match(k)
        if m and int(m.group(1)) < MAX_NET:
            keys.append(k)
    return sorted(keys, key=lambda k: int(k[3:]))


def pending_network_changes(text: str, gtype: str = "lxc") -> bool:
    """True when the pending section changes or deletes any netN/ipconfigN."""
    _cur, sections, _bad = split_sections(text)
    pending = sections.get(PENDING_SECTIONS[gtype], {})
    touched = [k for k in pending if k != "delete"] + pending.get("delete", "").split(",")
    return any(re.match(r"^!?(net|ipconfig)\d+$", k.strip()) for k in touched)


def parse_config(text: str, vmid: int, gtype: str = "lxc", node: str | None = None,
                 with_pending: bool = False) -> Guest:
    """Parse a guest config; the current section only, or pending merged over it."""
    current, sections, bad = split_sections(text)
    pending = False
    if with_pending and pending_network_changes(text, gtype):
        current = merge_pending(current, sections.get(PENDING_SECTIONS[gtype], {}))
        pending = True
    nics = []
    for key in _net_keys(current):
        if gtype == "qemu":
            nics.append(parse_qemu_net(key, current[key], current.get(f"ipconfig{key[3:]}")))
        else:
            nics.append(parse_lxc_net(key, current[key]))
    name = current.get("hostname" if gtype == "lxc" else "name")
    errors = tuple(f"cannot read line {line!r}" for line in bad)
    return Guest(vmid=vmid, type=gtype, name=name, node=node, nics=tuple(nics),
                 template=current.get("template") == "1", hookscript=current.get("hookscript"),
                 pending=pending, errors=errors)


def with_node(guest: Guest, node: str) -> Guest:
    return replace(guest, node=node)

"""Guests and their NICs, read from Proxmox VE config text. Pure, linear time.

The file is split into sections and key lines by conffile.py (parse_pct_config
and parse_vm_config's rules); values are read by values.py. Here the keys
become NICs, following pve-container src/PVE/LXC/Config.pm and LXC.pm
(netN, raw lxc.net.N keys) and qemu-server src/PVE/QemuServer/Network.pm
(netN, ipconfigN); REFERENCE section 3:
- only the current section describes the guest that starts (PVE applies
  pending changes before pre-start; with_pending merges them for `check`);
- an LXC netN that PVE cannot parse stops the container from starting: it
  is that NIC's error. A VM netN (or ipconfigN) that PVE cannot parse is
  dropped by qemu-server, and the VM starts without it (or without its
  cloud-init address): dropped here too, with a note in Guest.errors, so
  `on_error = refuse` never refuses a start PVE allows;
- link_down=1 unplugs a NIC: it is read but never probed (Nic.skip);
- raw `lxc.net.N.*` keys come after PVE's own in the LXC config PVE writes
  (LXC.pm update_lxc_config), so they override netN's type, link and
  hwaddr, and their ipv4.address / ipv6.address are addresses of their own
  (a Nic keyed "lxc.net.N").

Nothing here raises on bad input: what cannot be read becomes an error on
that NIC or on the guest, so the caller can say exactly what is wrong and
never mistakes garbage for a conflict.
"""
from __future__ import annotations

import ipaddress
import re
from phoenix_hook.records import dataclass, field, replace

from phoenix_hook.pve import conffile
from phoenix_hook.pve import values as V
from phoenix_hook.pve.values import IP6_MODES, show

PENDING_SECTIONS = {"lxc": "pve:pending", "qemu": "PENDING"}
MAX_NET = 32                      # net0..net31 (LXC Config.pm MAX_LXC_NETWORKS, QemuServer MAX_NETS)
_NET_RE = re.compile(r"net([0-9]{1,3})")
_RAW_NET_RE = re.compile(r"lxc\.net\.([0-9]{1,4})\.([a-z0-9_.\-]+)")
_QEMU_MODELS = frozenset({
    "e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
    "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3",
})
RAW_TYPES = ("veth", "macvlan", "ipvlan", "vlan", "phys", "empty", "none")   # liblxc lxc.net.N.type


@dataclass(frozen=True)
class Nic:
    """One guest network interface (netN, or lxc.net.N set by raw keys) and its addresses."""
    key: str                          # "net0", or "lxc.net.0" for a raw LXC NIC
    bridge: str | None = None         # the device it sits on (raw NICs: lxc.net.N.link)
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
    skip: str | None = None           # why this readable NIC is never probed (link_down=1, ...)
    note4: str | None = None          # why its valid static IPv4 is not probed (127.0.0.1/8, ...)
    note6: str | None = None

    @property
    def index(self) -> int:
        return int(self.key[3:] if self.key.startswith("net") else self.key.split(".")[2])

    @property
    def raw(self) -> bool:
        """Set up by raw lxc.net.N keys rather than a netN line."""
        return self.key.startswith("lxc.")

    @property
    def ip_mode(self) -> str:
        """'static', 'dhcp', 'manual', 'unusable', 'none' or 'invalid'."""
        if self.error:
            return "invalid"
        if self.address:
            return "static"
        if self.note4:
            return "unusable"
        if self.ip in ("dhcp", "manual"):
            return self.ip
        return "none"

    @property
    def ip6_mode(self) -> str:
        """'static', 'auto', 'dhcp', 'manual', 'unusable', 'none' or 'invalid'."""
        if self.error:
            return "invalid"
        if self.address6:
            return "static"
        if self.note6:
            return "unusable"
        if self.ip6 in IP6_MODES:
            return self.ip6
        return "none"

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        if self.address is None or self.prefixlen is None:
            return None
        return ipaddress.IPv4Network(f"{self.address}/{self.prefixlen}", strict=False)


def static_addresses(guests, skip_vmid: int | None = None) -> dict[str, list]:
    """{address: [(guest, nic)]} of every static IPv4 and IPv6 address configured on a NIC
    that could be read; templates never start, so they hold nothing (leases, audit --live)."""
    out: dict[str, list] = {}
    for g in guests:
        if g.template or g.vmid == skip_vmid:
            continue
        for n in g.nics:
            if n.error:
                continue
            for a in (n.address, n.address6):
                if a:
                    out.setdefault(a, []).append((g, n))
    return out


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
    errors: tuple[str, ...] = field(default=())   # what could not be read; never stops a check

    @property
    def label(self) -> str:
        return label_for(self.type, self.vmid)

    @property
    def titled(self) -> str:
        """"CT 951 embed-api": the label and, where it has one, the name."""
        return f"{self.label} {self.name}" if self.name else self.label

    def describe(self, nic_key: str | None = None) -> str:
        """"template CT 910 (dashboard) net0 on node pve2": a guest named for a message."""
        kind = "template " if self.template else ""
        name = f" ({self.name})" if self.name else ""
        where = f" on node {self.node}" if self.node else ""
        return f"{kind}{self.label}{name}" + (f" {nic_key}" if nic_key else "") + where

    def nic(self, key: str) -> Nic | None:
        return next((n for n in self.nics if n.key == key), None)


# -- sections -----------------------------------------------------------------

def split_sections(text: str, gtype: str = "lxc") -> tuple[dict[str, str], dict[str, dict[str, str]], list[str]]:
    """(current values, {section: values}, why lines of the current section could not be read).

    Sections are named as in the file: "pve:pending"/"PENDING", "special:cloudinit",
    snapshot names. Later keys win, and a repeated section replaces the earlier one, as in PVE.
    """
    cfg = conffile.read(text, gtype)
    sections = {f"special:{k}": s.values for k, s in cfg.special.items()}
    sections.update({k: s.values for k, s in cfg.snapshots.items()})
    if cfg.pending is not None:
        sections[PENDING_SECTIONS.get(gtype, "pve:pending")] = cfg.pending.values
    return cfg.current.values, sections, list(cfg.current.bad)


def parse_props(value: str, default_key: str | None = None) -> dict[str, str]:
    """A PVE property string "a=1,b=2" as a dict (what could be read before any error)."""
    return V.property_string(value, default_key)[0]


def merge_pending(current: dict[str, str], pending: dict[str, str]) -> dict[str, str]:
    """Current values with pending ones over them; 'delete: a,b' removes keys (PVE pending)."""
    merged = dict(current)
    for k, v in pending.items():
        if k != "delete":
            merged[k] = v
    for k in V.pending_delete(pending.get("delete", "")):
        merged.pop(k, None)
    return merged


def _touches_network(pending: dict[str, str]) -> bool:
    touched = [k for k in pending if k != "delete"] + V.pending_delete(pending.get("delete", ""))
    return any(re.fullmatch(r"(net|ipconfig)[0-9]+", k) for k in touched)


def pending_network_changes(text: str, gtype: str = "lxc") -> bool:
    """True when the pending section changes or deletes any netN/ipconfigN."""
    pending = conffile.read(text, gtype).pending
    return pending is not None and _touches_network(pending.values)


# -- NICs -----------------------------------------------------------------------

def _first(*errors):
    return next((e for e in errors if e), None)


def parse_lxc_net(key: str, value: str) -> Nic:
    """An LXC netN value: name=,bridge=,hwaddr=,ip=,gw=,ip6=,gw6=,tag=,link_down=,... (LXC/Config.pm
    netconf_desc). A value PVE cannot parse keeps the container from starting: an error."""
    p, err = V.property_string(value)
    if err:
        return Nic(key=key, error=err)
    hwaddr, e_mac = V.mac(p.get("hwaddr"))
    tag, e_tag = V.integer(p.get("tag"), "tag", 1, 4094, "a VLAN ID")
    bridge, e_br = V.ifname(p.get("bridge"))
    down, e_down = V.boolean(p.get("link_down"), "link_down")
    address, plen, note4, e_ip = V.ipv4_config(p.get("ip"))
    address6, plen6, note6, e_ip6 = V.ipv6_config(p.get("ip6"))
    _gw, e_gw = V.ipv4_address(p.get("gw"))
    _gw6, e_gw6 = V.ipv6_address(p.get("gw6"))
    name = p.get("name")
    e_name = None
    if name is None:
        e_name = "name= is missing"
    elif len(name) > 64 or not V._IFNAME_RE.fullmatch(name):
        e_name = f"name={show(name)} is not an interface name"
    error = _first(e_ip, e_gw, e_ip6, e_gw6, e_mac, e_tag, e_br, e_name, e_down)
    if error:                     # a NIC we cannot read is never probed or compared
        return Nic(key=key, error=error)
    return Nic(key=key, bridge=bridge, hwaddr=hwaddr, ip=p.get("ip"), address=address, prefixlen=plen,
               gw=p.get("gw"), ip6=p.get("ip6"), tag=tag, name=name, address6=address6,
               prefixlen6=plen6, note4=note4, note6=note6,
               skip="link_down=1: the NIC is unplugged, so it is not probed" if down else None)


def parse_qemu_net(key: str, value: str) -> tuple[Nic | None, str | None]:
    """A VM netN value (<model>=<MAC>,bridge=,tag=,link_down=,...; Network.pm net_fmt).

    (Nic, None), or (None, why) when qemu-server's parse_net would reject the
    value: PVE then drops the NIC and starts the VM without it.
    """
    p, err = V.property_string(value, "model", _QEMU_MODELS, "model", "macaddr")
    model = p.get("model")
    if err is None and model is None:
        err = "no NIC model (virtio=, e1000=, ...)"
    elif err is None and model not in _QEMU_MODELS:
        err = f"model {show(model)} is not a NIC model PVE knows"
    hwaddr, e_mac = V.mac(p.get("macaddr"), "macaddr")
    bridge = p.get("bridge")
    e_br = None
    if bridge is not None and (len(bridge) > V.MAX_VALUE or not V._IFNAME_RE.fullmatch(bridge)):
        e_br = f"bridge={show(bridge)} is not a bridge name (pve-bridge-id)"
    tag, e_tag = V.integer(p.get("tag"), "tag", 1, 4094, "a VLAN ID")
    down, e_down = V.boolean(p.get("link_down"), "link_down")
    why = _first(err, e_mac, e_br, e_tag, e_down)
    if why:
        return None, why
    nic = Nic(key=key, bridge=bridge, hwaddr=hwaddr, tag=tag, name=model,
              skip="link_down=1: the NIC is unplugged, so it is not probed" if down else None)
    if bridge is not None and len(bridge) > V.IFNAMSIZ:
        # PVE keeps the NIC; the VM cannot start on a bridge that cannot exist
        nic = replace(nic, error=f"bridge={show(bridge)} is longer than an interface name can be")
    return nic, None


def parse_ipconfig(value: str) -> tuple[dict, str | None]:
    """A VM ipconfigN value (Network.pm parse_ipconfig): ({ip, gw, ip6, gw6}, None), or
    ({}, why) when PVE ignores it (the NIC then gets no cloud-init address)."""
    p, err = V.property_string(value)
    if err:
        return {}, err
    ip, ip6, gw, gw6 = p.get("ip"), p.get("ip6"), p.get("gw"), p.get("gw6")
    checks = [V.ipv4_config(ip)[3], V.ipv6_config(ip6)[3], V.ipv4_address(gw)[1], V.ipv6_address(gw6)[1]]
    why = _first(*checks)
    if why is None and gw and not ip:
        why = "gw= without ip="
    if why is None and gw6 and not ip6:
        why = "gw6= without ip6="
    if why is None and gw and ip == "dhcp":
        why = "gw= together with ip=dhcp"
    if why is None and gw6 and ip6 in IP6_MODES:
        why = f"gw6= together with ip6={ip6}"
    if why:
        return {}, why
    if not ip and not ip6:
        return {"ip": "dhcp", "ip6": "dhcp"}, None
    return p, None


def _with_ipconfig(nic: Nic, c: dict) -> Nic:
    address, plen, note4, _ = V.ipv4_config(c.get("ip"))
    address6, plen6, note6, _ = V.ipv6_config(c.get("ip6"))
    return replace(nic, ip=c.get("ip"), address=address, prefixlen=plen, gw=c.get("gw"), ip6=c.get("ip6"),
                   address6=address6, prefixlen6=plen6, note4=note4, note6=note6)


def _net_keys(values: dict[str, str], errors: list[str]) -> list[str]:
    keys = []
    for k in values:
        m = _NET_RE.fullmatch(k)
        if m and int(m.group(1)) < MAX_NET:
            keys.append(k)
        elif m:
            errors.append(f"{k}: PVE knows net0 to net{MAX_NET - 1} only; not read")
    return sorted(keys, key=lambda k: int(k[3:]))


# -- raw lxc.net.N keys -----------------------------------------------------------

def raw_nets(raw: list) -> dict[int, dict]:
    """{index: {sub-key: value, "ipv4": [...], "ipv6": [...]}} from raw lxc.net.N lines, in
    file order (liblxc: a later line wins; address lines add up, an empty one clears them)."""
    out: dict[int, dict] = {}
    for key, value in raw:
        m = _RAW_NET_RE.fullmatch(key)
        if not m:
            continue
        d = out.setdefault(int(m.group(1)), {"ipv4": [], "ipv6": []})
        sub = m.group(2)
        if sub in ("ipv4.address", "ipv6.address"):
            fam = sub[:4]
            if value:
                d[fam].append(value)
            else:
                d[fam].clear()
        elif sub in ("type", "link", "hwaddr", "name", "vlan.id"):
            d[sub] = value
    return out


def raw_ipv4(value: str):
    """(address, prefixlen, note, error) for lxc.net.N.ipv4.address: "a.b.c.d[/m] [broadcast]";
    without /m liblxc takes the classful prefix (confile_utils.c config_ip_prefix)."""
    first = value.split()[0] if value.split() else ""
    addr, sep, plen = first.partition("/")
    try:
        if len(first) > 28 or (sep and not V._PREFIX_RE.fullmatch(plen)) or (sep and int(plen) > 32):
            raise ValueError
        a = ipaddress.IPv4Address(addr)
    except ValueError:
        return None, None, None, f"ipv4.address={show(value)} is not an IPv4 address/prefix"
    why = V.unusable4(a)
    if why:
        return None, None, f"ipv4.address={first} is {why}, not probed", None
    if sep:
        return str(a), int(plen), None, None
    top = a.packed[0]
    return str(a), 8 if top < 128 else 16 if top < 192 else 24, None, None


def _raw_ipv6(value: str):
    first = value.split()[0] if value.split() else ""
    addr, sep, plen = first.partition("/")
    try:
        if (len(first) > 60 or "%" in addr or (sep and not V._PREFIX_RE.fullmatch(plen))
                or (sep and int(plen) > 128)):
            raise ValueError
        a = ipaddress.IPv6Address(addr)
    except ValueError:
        return None, None, None, f"ipv6.address={show(value)} is not an IPv6 address/prefix"
    why = V.unusable6(a)
    if why:
        return None, None, f"ipv6.address={first} is {why}, not probed", None
    return a.compressed, int(plen) if sep else 64, None, None


def _raw_nics(nics: list[Nic], raw: list, errors: list[str], cut: dict[int, str]) -> list[Nic]:
    """netN overridden by raw lxc.net.N keys, plus a Nic "lxc.net.N" for raw addresses, for raw
    NICs without a netN and for raw keys that cannot be read (an error: liblxc refuses them, and
    the container does not start). Only the first ipv4.address / ipv6.address is checked (said
    so). cut: indexes whose raw lines were too long to read, and why."""
    by_index = {n.index: i for i, n in enumerate(nics)}
    extra = []
    nets = raw_nets(raw)
    for idx in cut:
        nets.setdefault(idx, {"ipv4": [], "ipv6": []})
    for idx, d in sorted(nets.items()):
        key = f"lxc.net.{idx}"
        base = nics[by_index[idx]] if idx in by_index else None
        typ = d.get("type", "veth" if base is not None else None)
        link, e_link = V.ifname(d.get("link"), "link")
        hw = d.get("hwaddr")
        hwaddr, e_mac = (None, None) if hw is None or "x" in hw.lower() else V.mac(hw)  # x: liblxc picks
        vlan, e_vlan = V.integer(d.get("vlan.id"), "vlan.id", 0, 4094, "a VLAN ID")
        e_type = None
        if typ is None:
            e_type = "lxc.net.N.type is missing"
        elif typ not in RAW_TYPES:
            e_type = f"type={show(typ)} is not a liblxc network type"
        a4, p4, n4, e4 = raw_ipv4(d["ipv4"][0]) if d["ipv4"] else (None, None, None, None)
        a6, p6, n6, e6 = _raw_ipv6(d["ipv6"][0]) if d["ipv6"] else (None, None, None, None)
        error = _first(cut.get(idx), e_type, e_link, e_mac, e_vlan, e4, e6)
        if error:
            extra.append(Nic(key=key, error=error))
            continue
        for fam in ("ipv4", "ipv6"):
            if len(d[fam]) > 1:
                errors.append(f"{key} has {len(d[fam])} {fam}.address lines: only the first is checked")
        skip = f"type={typ}: no interface of its own on the LAN, so it is not probed" \
            if typ in ("empty", "none") else None
        tag = vlan if typ == "vlan" and vlan else None
        if base is not None:
            # raw keys follow PVE's own lxc.net.N lines in the LXC config, so they win
            if base.error is None:
                base = replace(base, bridge=link or base.bridge, hwaddr=hwaddr or base.hwaddr,
                               tag=tag or base.tag, skip=skip or base.skip)
                nics[by_index[idx]] = base
            if not d["ipv4"] and not d["ipv6"]:
                continue
            link, hwaddr, tag, skip = base.bridge, base.hwaddr, base.tag, base.skip
        name = d.get("name")
        extra.append(Nic(key=key, bridge=link, hwaddr=hwaddr, tag=tag,
                         name=name if name and name.isprintable() else None,
                         ip=d["ipv4"][0] if d["ipv4"] else None, address=a4, prefixlen=p4,
                         ip6=d["ipv6"][0] if d["ipv6"] else None, address6=a6, prefixlen6=p6,
                         note4=n4, note6=n6, skip=skip))
    return nics + extra


# -- the guest ----------------------------------------------------------------------

def _too_long(nic_key: str, section) -> str | None:
    n = section.too_long.get(nic_key)
    return f"its line is {n} characters long, more than {conffile.MAX_LINE}: not read" if n else None


def parse_config(text: str, vmid: int, gtype: str = "lxc", node: str | None = None,
                 with_pending: bool = False) -> Guest:
    """Parse a guest config; the current section only, or pending merged over it."""
    cfg = conffile.read(text, gtype)
    cur = cfg.current
    errors = ([cfg.cut] if cfg.cut else []) + list(cur.bad)
    values = cur.values
    pending = False
    if with_pending and cfg.pending is not None and _touches_network(cfg.pending.values):
        values = merge_pending(values, cfg.pending.values)
        errors += [f"[{PENDING_SECTIONS[gtype]}] {b}" for b in cfg.pending.bad]
        pending = True
    nics = []
    for key in sorted(set(_net_keys(values, errors)) | {k for k in cur.too_long if _NET_RE.fullmatch(k)
                                                         and int(k[3:]) < MAX_NET},
                      key=lambda k: int(k[3:])):
        if key in cur.too_long and key not in values:
            nics.append(Nic(key=key, error=_too_long(key, cur)))
        elif gtype == "qemu":
            nic, why = parse_qemu_net(key, values[key])
            if nic is None:
                errors.append(f"{key}: {why}; PVE drops this NIC and starts the VM without it: not checked")
                continue
            c_key = f"ipconfig{key[3:]}"
            if c_key in cur.too_long and c_key not in values:
                nic = replace(nic, error=f"{c_key}: {_too_long(c_key, cur)}")
            elif values.get(c_key) is not None and nic.error is None:
                c, why = parse_ipconfig(values[c_key])
                if why:
                    errors.append(f"{c_key}: {why}; PVE ignores it, so {key} gets no cloud-init "
                                  f"address: not checked")
                nic = _with_ipconfig(nic, c)
            nics.append(nic)
        else:
            nics.append(parse_lxc_net(key, values[key]))
    if gtype == "lxc":
        cut = {}
        for k, n in cur.too_long.items():
            m = _RAW_NET_RE.fullmatch(k)
            if m:
                cut[int(m.group(1))] = f"{k}: {_too_long(k, cur)}"
        nics = _raw_nics(nics, cur.raw, errors, cut)
    name = values.get("hostname" if gtype == "lxc" else "name")
    if not name or not name.isprintable():
        name = None                  # a display name only; PVE's dns-name format refuses it too
    return Guest(vmid=vmid, type=gtype, name=name, node=node, nics=tuple(nics),
                 template=values.get("template") == "1", hookscript=values.get("hookscript"),
                 pending=pending, errors=tuple(errors))


def with_node(guest: Guest, node: str) -> Guest:
    return replace(guest, node=node)

"""Reading an orchestrator's plans: what it is about to create. Pure but for load_plan's file read.

Three shapes are read (README "Plans: shapes, several files, what is left out"), also
several files in one call:

1. The phoenix_hypervisor LXC shape (phoenix_lxc_configs.json):
       {"lxc_configs": {"951": {"name": "embed-api",
                                "network_config": {"name": "eth0", "bridge": "vmbr0",
                                                   "ip": "10.0.0.151/24", "gw": "10.0.0.1",
                                                   "hwaddr": "52:54:00:67:89:B1"},
                                "secondary_network_config": {...} | null,
                                "mac_address": "52:54:00:67:89:B1",
                                "lxc_options": ["lxc.net.1.type: macvlan", ...], ...}}}
   network_config is net0 (or a list: net0, net1, ...); secondary_network_config
   the next NIC (lxc-manager.sh's net1), null for none. A NIC's MAC is its
   "hwaddr" (or "mac_address"); net0 falls back to the entry's mac_address.
   "tag" or "vlan" is the VLAN. Raw lxc.net.N keys in lxc_options act as in a
   config (pve/guest.py): link and hwaddr override netN, ipv4.address is an
   address of its own (NIC "lxc.net.N").
2. The phoenix_hypervisor VM shape (phoenix_vm_configs.json):
       {"vm_defaults": {"network_bridge": "vmbr0", ...},
        "vms": [{"vmid": 8001, "name": "docker-vm-01",
                 "network_config": {"ip": "10.0.0.101/24", "gw": "10.0.0.1", "nameserver": ...}}]}
   Each VM is type qemu with one cloud-init NIC, net0 (vm-manager.sh runs
   `qm set --ipconfig0 ip=...,gw=...`); its bridge is network_config.bridge,
   else the VM's network_bridge, else vm_defaults.network_bridge.
3. A generic list, one entry per NIC:
       [{"vmid": 951, "nic": "net0", "bridge": "vmbr0", "ip": "10.0.0.151/24",
         "mac": "52:54:00:67:89:B1", "vlan": null, "gw": "10.0.0.1",
         "name": "embed-api", "type": "lxc"}]
   vmid and ip are required; nic defaults to net0, type to lxc.

A NIC without a bridge is probed on vmbr0 (DEFAULT_BRIDGE, the bridge PVE's
installer creates), and the report says so. A guest or NIC that is left out
(no network_config, a raw NIC with no interface of its own) is a PlanNote,
so the report says why; nothing is dropped silently.

Reading never raises anything but PlanError, whose str() is the one line for
the admin: which file, where in it, what is wrong, how to fix it.
"""
from __future__ import annotations

import ipaddress
import json
import re
from phoenix_hook.records import dataclass, replace

from phoenix_hook.pve import conffile
from phoenix_hook.pve.guest import RAW_TYPES, label_for, raw_ipv4, raw_nets

MAX_VMID = 999_999_999            # pve-common: VMIDs 100..999999999
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")   # a Linux interface name (IFNAMSIZ-1)
_NIC_RE = re.compile(r"^net([0-9]|[12][0-9]|3[01])$")
FIX = "fix the plan"
DEFAULT_BRIDGE = "vmbr0"
DEFAULT_BRIDGE_NOTE = (f"the plan names no bridge: probed on {DEFAULT_BRIDGE}, PVE's default bridge "
                       f"(add \"bridge\" to the entry if it is another)")
DEFAULT_BRIDGE_NOTE_NO_PROBE = (f"the plan names no bridge: assumed {DEFAULT_BRIDGE}, PVE's default bridge "
                                f"(add \"bridge\" to the entry if it is another)")


class PlanError(ValueError):
    """The plan cannot be read; str() is one line naming where and what."""


@dataclass(frozen=True)
class PlanEntry:
    """One planned NIC of one guest."""
    vmid: int
    nic: str = "net0"               # net0..net31, or lxc.net.N for a raw LXC NIC
    bridge: str | None = None
    ip: str | None = None           # as planned: "10.0.0.151/24", "dhcp", "manual", None
    address: str | None = None      # "10.0.0.151" when static
    prefixlen: int | None = None
    gw: str | None = None
    mac: str | None = None          # lower-case, colon-separated
    vlan: int | None = None
    name: str | None = None
    type: str = "lxc"
    where: str = ""                 # where in the plan, for messages
    bridge_default: bool = False    # no bridge in the plan: DEFAULT_BRIDGE assumed
    origin: str = ""                # the plan file

    @property
    def label(self) -> str:
        return label_for(self.type, self.vmid)

    @property
    def located(self) -> str:
        """"vm.json vms[1].network_config": the file and the place in it."""
        return f"{self.origin} {self.where}".strip()

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        if self.address is None:
            return None
        return ipaddress.IPv4Network(f"{self.address}/{self.prefixlen}", strict=False)

    def to_nic(self):
        from phoenix_hook.pve.guest import Nic
        return Nic(key=self.nic, bridge=self.bridge, hwaddr=self.mac, ip=self.ip,
                   address=self.address, prefixlen=self.prefixlen, gw=self.gw, tag=self.vlan,
                   name=None)


@dataclass(frozen=True)
class PlanNote:
    """Something of the plan that is not checked, and why (a guest without a network, ...)."""
    vmid: int
    type: str
    name: str | None
    text: str
    origin: str = ""


def nic_order(nic: str) -> tuple[int, int]:
    """net0..net31 first, in order, then raw lxc.net.N NICs."""
    return (0, int(nic[3:])) if nic.startswith("net") else (1, int(nic.rsplit(".", 1)[-1]))


# -- values ---------------------------------------------------------------------

from phoenix_hook.pve.values import show as _show  # noqa: E402 (a plan value for a message)


def _err(origin: str, where: str, what: str) -> PlanError:
    return PlanError(f"{origin}: {where}: {what}; {FIX}")


def _vmid(value, origin, where) -> int:
    v = value
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 10:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= MAX_VMID:
        raise _err(origin, where, f"{_show(value)} is not a CTID/VMID (a number from 100 to {MAX_VMID})")
    return v


def _opt_str(value, origin, where) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _err(origin, where, f"{_show(value)} must be a string")
    return value.strip()


def _clean_name(value) -> str | None:
    """A display name: strings only, printable on any terminal."""
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip()[:64]
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def _vlan(value, origin, where) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 4:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4094:
        raise _err(origin, where, f"{_show(value)} is not a VLAN ID (1-4094, or null for untagged)")
    return value


def _mac(value, origin, where) -> str | None:
    v = _opt_str(value, origin, where)
    if not v:
        return None
    if not _MAC_RE.match(v):
        raise _err(origin, where, f"{_show(value)} is not a MAC address like 52:54:00:67:89:B1")
    mac = v.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise _err(origin, where, f"{_show(value)} is a multicast MAC; a NIC needs a unicast one")
    return mac


def _nic_key(value, origin, where) -> str:
    if value is None:
        return "net0"
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"net{value}"
    if not isinstance(value, str) or not _NIC_RE.match(value.strip()):
        raise _err(origin, where, f"{_show(value)} is not a NIC like net0 .. net31 (or 0 .. 31)")
    return value.strip()


def _ipv4(ip, gw, origin, where):
    """(raw ip, address, prefixlen, gw) for a planned ip/gw pair (pve-ipv4-config: /8 to /32)."""
    ip = _opt_str(ip, origin, f"{where}.ip")
    gw = _opt_str(gw, origin, f"{where}.gw") or None
    if not ip or ip in ("dhcp", "manual"):
        if gw:
            _gw(gw, origin, where)
        return ip or None, None, None, gw
    addr, sep, plen = ip.partition("/")
    try:
        a = ipaddress.IPv4Address(addr.strip())
        ok = not sep or (plen.isascii() and plen.isdigit() and len(plen) <= 2 and 8 <= int(plen) <= 32)
    except ValueError:
        ok = False
    if not ok:
        raise _err(origin, f"{where}.ip", f"{_show(ip)} is not dhcp, manual or an IPv4 address "
                   f"with /prefix (8 to 32) like 10.0.0.151/24")
    if not sep:
        raise _err(origin, f"{where}.ip", f"{_show(ip)} has no prefix length; write it with "
                   f"its subnet, e.g. {a}/24")
    if a.is_unspecified or a.is_multicast or a.is_loopback or a.is_reserved or int(a) == 0xFFFFFFFF:
        raise _err(origin, f"{where}.ip", f"{_show(ip)} is not a unicast host address")
    if gw:
        _gw(gw, origin, where)
    return ip, str(a), int(plen), gw


def _gw(gw, origin, where) -> None:
    try:
        ipaddress.IPv4Address(gw)
    except ValueError:
        raise _err(origin, f"{where}.gw", f"{_show(gw)} is not an IPv4 address") from None


def _bridge(value, origin, where) -> str | None:
    v = _opt_str(value, origin, where)
    if not v:
        return None
    if not _BRIDGE_RE.match(v):
        raise _err(origin, where, f"{_show(value)} is not a bridge name like vmbr0")
    return v


def _entry(vmid, nic, net: dict, mac, name, gtype, origin, where) -> PlanEntry:
    ip, address, plen, gw = _ipv4(net.get("ip"), net.get("gw"), origin, where)
    vlan_key = "vlan" if "vlan" in net else "tag"
    e = PlanEntry(vmid=vmid, nic=nic, bridge=_bridge(net.get("bridge"), origin, f"{where}.bridge"),
                  ip=ip, address=address, prefixlen=plen, gw=gw,
                  mac=_mac(mac, origin, f"{where}.mac"),
                  vlan=_vlan(net.get(vlan_key), origin, f"{where}.{vlan_key}"),
                  name=_clean_name(name), type=gtype, where=where, origin=origin)
    if e.bridge is None:
        e = replace(e, bridge=DEFAULT_BRIDGE, bridge_default=True)
    return e


def _nic_mac(net: dict, fallback):
    """A NIC's planned MAC: its "hwaddr" (what pct calls it), its "mac_address", else fallback."""
    for key in ("hwaddr", "mac_address", "mac"):
        if net.get(key) not in (None, ""):
            return net[key]
    return fallback


# -- the LXC shape -----------------------------------------------------------------

def _raw_options(options, origin, where) -> dict[int, dict]:
    """Raw lxc.net.N keys of lxc_options ("key: value" or "key=value", as a config line)."""
    if options is None:
        return {}
    if not isinstance(options, list):
        raise _err(origin, where, "must be a list of raw lxc.* lines")
    pairs = []
    for i, opt in enumerate(options):
        if not isinstance(opt, str):
            raise _err(origin, f"{where}[{i}]", f"{_show(opt)} must be a string like \"lxc.key: value\"")
        pair = conffile.raw_line(opt.strip()) if opt.strip().startswith("lxc.") else None
        if pair is None:
            raise _err(origin, f"{where}[{i}]", f"{_show(opt)} is not a raw lxc.* line "
                       f"(\"lxc.key: value\" or \"lxc.key = value\")")
        pairs.append(pair)
    return raw_nets(pairs)


def _apply_raw(entries: list[PlanEntry], raw: dict[int, dict], vmid, name, origin, where,
               notes: list[PlanNote]) -> list[PlanEntry]:
    """Raw lxc.net.N keys over the planned NICs, as LXC applies them after PVE's own."""
    out = list(entries)
    by_index = {int(e.nic[3:]): i for i, e in enumerate(out)}
    for idx, d in sorted(raw.items()):
        w = f"{where} lxc.net.{idx}"
        typ = d.get("type")
        if typ is not None and typ not in RAW_TYPES:
            raise _err(origin, f"{w}.type", f"{_show(typ)} is not a liblxc network type ({', '.join(RAW_TYPES)})")
        link = _bridge(d.get("link"), origin, f"{w}.link")
        mac = None if d.get("hwaddr") is None or "x" in d["hwaddr"].lower() else \
            _mac(d.get("hwaddr"), origin, f"{w}.hwaddr")
        if typ in ("empty", "none"):
            if idx in by_index:
                dropped = out[by_index[idx]]
                out[by_index[idx]] = None
                notes.append(PlanNote(vmid, "lxc", name, f"{dropped.nic} is not checked: lxc_options make it "
                                      f"type={typ}, no interface of its own on the LAN", origin))
            continue
        if idx in by_index and out[by_index[idx]] is not None:
            e = out[by_index[idx]]
            out[by_index[idx]] = replace(e, bridge=link or e.bridge, mac=mac or e.mac,
                                         bridge_default=e.bridge_default and not link)
            if typ and typ != "veth":
                notes.append(PlanNote(vmid, "lxc", name, f"{e.nic} is a {typ} interface on "
                                      f"{link or e.bridge} (lxc_options)", origin))
        for fam in ("ipv6",):
            if d[fam]:
                notes.append(PlanNote(vmid, "lxc", name, f"lxc.net.{idx}.{fam}.address in lxc_options is "
                                      f"not checked (preflight checks IPv4)", origin))
        if d["ipv4"]:
            address, plen, note, error = raw_ipv4(d["ipv4"][0])
            if error:
                raise _err(origin, f"{w}.ipv4.address", error)
            if note:
                notes.append(PlanNote(vmid, "lxc", name, f"lxc.net.{idx}: {note}", origin))
                continue
            base = out[by_index[idx]] if idx in by_index and out[by_index[idx]] is not None else None
            out.append(_entry(vmid, f"lxc.net.{idx}", {"ip": f"{address}/{plen}",
                                                      "bridge": link or (base and base.bridge)},
                              mac or (base and base.mac), name, "lxc", origin, f"{w}.ipv4.address"))
            if len(d["ipv4"]) > 1:
                notes.append(PlanNote(vmid, "lxc", name, f"lxc.net.{idx} has {len(d['ipv4'])} ipv4.address "
                                      f"lines in lxc_options: only the first is checked", origin))
    return [e for e in out if e is not None]


def _from_lxc_configs(configs, origin, notes: list[PlanNote]) -> list[PlanEntry]:
    if not isinstance(configs, dict):
        raise _err(origin, "lxc_configs", "must be an object keyed by CTID")
    out = []
    for key, cfg in configs.items():
        where = f"lxc_configs[{json.dumps(key)}]"
        vmid = _vmid(key, origin, where)
        if not isinstance(cfg, dict):
            raise _err(origin, where, "must be an object with network_config")
        name = _clean_name(cfg.get("name"))
        nets = cfg.get("network_config")
        nets = [] if nets is None else [nets] if isinstance(nets, dict) else nets
        if not isinstance(nets, list) or len(nets) > 32:
            raise _err(origin, f"{where}.network_config", "must be an object {name, bridge, ip, gw} "
                       "or a list of up to 32 of them")
        places = [f"{where}.network_config" + (f"[{i}]" if len(nets) > 1 else "") for i in range(len(nets))]
        second = cfg.get("secondary_network_config")
        if second is not None:                    # null: no second NIC
            nets = nets + [second]
            places.append(f"{where}.secondary_network_config")
        raw = _raw_options(cfg.get("lxc_options"), origin, f"{where}.lxc_options")
        if not nets and not any(d["ipv4"] for d in raw.values()):
            notes.append(PlanNote(vmid, "lxc", name, "has no network_config: no NIC to check", origin))
            continue
        entries = []
        for i, (net, w) in enumerate(zip(nets, places)):
            if not isinstance(net, dict):
                raise _err(origin, w, "must be an object {name, bridge, ip, gw}")
            mac = _nic_mac(net, cfg.get("mac_address") if i == 0 else None)
            entries.append(_entry(vmid, f"net{i}", net, mac, name, "lxc", origin, w))
        out += _apply_raw(entries, raw, vmid, name, origin, f"{where}.lxc_options", notes)
    return out


# -- the VM shape ---------------------------------------------------------------------

def _from_vms(doc: dict, origin, notes: list[PlanNote]) -> list[PlanEntry]:
    defaults = doc.get("vm_defaults")
    defaults = {} if defaults is None else defaults
    if not isinstance(defaults, dict):
        raise _err(origin, "vm_defaults", "must be an object")
    vms = doc.get("vms")
    if not isinstance(vms, list):
        raise _err(origin, "vms", "must be a list of {vmid, name, network_config}")
    default_bridge = _bridge(defaults.get("network_bridge"), origin, "vm_defaults.network_bridge")
    out = []
    for i, vm in enumerate(vms):
        where = f"vms[{i}]"
        if not isinstance(vm, dict):
            raise _err(origin, where, "must be an object {vmid, name, network_config}")
        if "vmid" not in vm:
            raise _err(origin, where, "has no vmid")
        vmid = _vmid(vm["vmid"], origin, f"{where}.vmid")
        name = _clean_name(vm.get("name"))
        net = vm.get("network_config")
        if net is None:
            notes.append(PlanNote(vmid, "qemu", name, "has no network_config: no cloud-init address "
                                  "to check", origin))
            continue
        if not isinstance(net, dict):
            raise _err(origin, f"{where}.network_config", "must be an object {ip, gw, nameserver}")
        bridge = (_bridge(net.get("bridge"), origin, f"{where}.network_config.bridge")
                  or _bridge(vm.get("network_bridge"), origin, f"{where}.network_bridge") or default_bridge)
        e = _entry(vmid, "net0", {**net, "bridge": bridge}, _nic_mac(net, vm.get("mac_address")), name,
                   "qemu", origin, f"{where}.network_config")
        out.append(e)
    return out


# -- the generic list ---------------------------------------------------------------------

def _from_list(items, origin) -> list[PlanEntry]:
    out = []
    for i, item in enumerate(items):
        where = f"[{i}]"
        if not isinstance(item, dict):
            raise _err(origin, where, "each entry must be an object {vmid, nic, bridge, ip, mac, vlan}")
        if "vmid" not in item:
            raise _err(origin, where, "has no vmid")
        if "ip" not in item:
            raise _err(origin, where, "has no ip (an IPv4/prefix, dhcp or manual)")
        vmid = _vmid(item["vmid"], origin, f"{where}.vmid")
        gtype = item.get("type", "lxc")
        if gtype not in ("lxc", "qemu"):
            raise _err(origin, f"{where}.type", f"{_show(gtype)} is not lxc or qemu")
        nic = _nic_key(item.get("nic"), origin, f"{where}.nic")
        out.append(_entry(vmid, nic, item, item.get("mac", item.get("hwaddr")), item.get("name"),
                          gtype, origin, where))
    return out


# -- whole plans ---------------------------------------------------------------------------

def read_plan(data, origin: str = "plan") -> tuple[list[PlanEntry], list[PlanNote]]:
    """(entries sorted by VMID and NIC, notes on what is not checked) from parsed JSON."""
    notes: list[PlanNote] = []
    if isinstance(data, dict) and ("lxc_configs" in data or "vms" in data):
        entries = []
        if "lxc_configs" in data:
            entries += _from_lxc_configs(data["lxc_configs"], origin, notes)
        if "vms" in data:
            entries += _from_vms(data, origin, notes)
    elif isinstance(data, list):
        entries = _from_list(data, origin)
    else:
        raise PlanError(f"{origin}: not a plan: expected {{\"lxc_configs\": {{CTID: {{...}}}}}}, "
                        f"{{\"vms\": [{{vmid, network_config}}, ...]}} or a list of "
                        f"{{vmid, nic, bridge, ip, mac, vlan}} entries "
                        f"(README 'Plans: shapes, several files, what is left out')")
    seen: dict = {}
    for e in entries:
        k = (e.vmid, e.nic)
        if k in seen:
            raise _err(origin, e.where, f"{e.label} {e.nic} is planned twice (also at {seen[k]})")
        seen[k] = e.where
    kinds: dict = {}
    for x in [(e.vmid, e.type, e.where) for e in entries] + [(n.vmid, n.type, "") for n in notes]:
        if kinds.setdefault(x[0], x[1]) != x[1]:
            raise _err(origin, x[2] or str(x[0]), f"VMID {x[0]} is planned both as a container and as "
                       f"a VM; a VMID names one guest")
    return sorted(entries, key=lambda e: (e.vmid, nic_order(e.nic))), notes


def parse_plan(data, origin: str = "plan") -> list[PlanEntry]:
    """Plan entries from parsed JSON (any shape), sorted by VMID and NIC."""
    return read_plan(data, origin)[0]


def _decode(text, origin):
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PlanError(f"{origin}: not UTF-8 text (byte {exc.start}); save the plan as UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{origin}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                        f"{FIX}") from None
    except (RecursionError, ValueError) as exc:
        raise PlanError(f"{origin}: JSON cannot be read ({type(exc).__name__}); {FIX}") from None


def reads_plan(text, origin: str = "plan") -> tuple[list[PlanEntry], list[PlanNote]]:
    """(entries, notes) from JSON text (str or bytes)."""
    data = _decode(text, origin)
    try:
        return read_plan(data, origin)
    except RecursionError:
        raise PlanError(f"{origin}: nested too deeply to be a plan; {FIX}") from None


def loads_plan(text, origin: str = "plan") -> list[PlanEntry]:
    """Plan entries from JSON text (str or bytes)."""
    return reads_plan(text, origin)[0]


def read_plan_file(path: str) -> tuple[list[PlanEntry], list[PlanNote]]:
    """(entries, notes) from a file ("-": standard input)."""
    import sys
    try:
        if path == "-":
            return reads_plan(sys.stdin.buffer.read(), "<stdin>")
        with open(path, "rb") as f:
            raw = f.read()
    except PermissionError:
        raise PlanError(f"{path}: cannot read the plan: permission denied; make it readable to this "
                        f"user (ls -l {path}) or run as root") from None
    except IsADirectoryError:
        raise PlanError(f"{path}: is a directory, not a plan file; name the JSON file") from None
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file; check the path") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc.strerror})") from None
    return reads_plan(raw, path)


def load_plan(path: str) -> list[PlanEntry]:
    """Plan entries from a file ("-": standard input)."""
    return read_plan_file(path)[0]


def combine(plans) -> tuple[list[PlanEntry], list[PlanNote]]:
    """Several plans ((entries, notes) each) as one. A guest ID in two files is a PlanError
    naming both; the same address in two files is left to check_plan, a finding naming both."""
    where: dict[int, str] = {}
    entries: list[PlanEntry] = []
    notes: list[PlanNote] = []
    for es, ns in plans:
        mine = {}
        for e in es:
            mine.setdefault(e.vmid, e.located)
        for n in ns:
            mine.setdefault(n.vmid, f"{n.origin} ({label_for(n.type, n.vmid)})")
        for vmid, place in mine.items():
            if vmid in where:
                raise PlanError(f"VMID {vmid} is planned twice: in {where[vmid]} and in {place}; a VMID "
                                f"names one guest; {FIX}")
            where[vmid] = place
        entries += es
        notes += ns
    return sorted(entries, key=lambda e: (e.vmid, nic_order(e.nic))), notes

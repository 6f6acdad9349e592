"""An orchestrator's plan: what it is about to create, and what is wrong with it. Pure.

Two forms are read (README "Preflight"):

1. The phoenix_hypervisor shape (../shared/fixtures/phoenix_lxc_configs.json):
       {"lxc_configs": {"951": {"name": "embed-api",
                                "network_config": {"name": "eth0", "bridge": "vmbr0",
                                                   "ip": "10.0.0.151/24", "gw": "10.0.0.1"},
                                "mac_address": "52:54:00:67:89:B1", ...}}}
   network_config may also be a list (net0, net1, ...); "tag" or "vlan" in it
   is the VLAN; other keys are ignored.
2. A generic list, one entry per NIC:
       [{"vmid": 951, "nic": "net0", "bridge": "vmbr0", "ip": "10.0.0.151/24",
         "mac": "52:54:00:67:89:B1", "vlan": null, "gw": "10.0.0.1",
         "name": "embed-api", "type": "lxc"}]
   vmid and ip are required; nic defaults to net0, type to lxc, bridge to
   vmbr0 (DEFAULT_BRIDGE, the bridge PVE's installer creates and its GUI
   offers first), and the report says the bridge was assumed: a static
   address without a bridge would otherwise be skipped unprobed.

parse_plan never raises anything but PlanError, whose str() is the one line
for the admin: where in the plan, what is wrong, how to fix it.

check_plan finds, for each planned NIC, the problems the issue lists (each
naming every CTID involved): duplicates within the plan, IPs and MACs that
existing guests already use, network/broadcast/gateway addresses, gateways
outside the subnet, the host's and the cluster nodes' own addresses, and
addresses inside a DHCP pool.
"""
from __future__ import annotations

import ipaddress
import json
import re
from phoenix_hook.records import dataclass, replace

from phoenix_hook.checks.addressing import address_problems, dhcp_pool
from phoenix_hook.pve.guest import Guest, Nic, label_for

MAX_VMID = 999_999_999            # pve-common: VMIDs 100..999999999
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")   # a Linux interface name (IFNAMSIZ-1)
_NIC_RE = re.compile(r"^net([0-9]|[12][0-9]|3[01])$")
FIX = "fix the plan"
DEFAULT_BRIDGE = "vmbr0"
DEFAULT_BRIDGE_NOTE = (f"the plan names no bridge: probed on {DEFAULT_BRIDGE}, PVE's default bridge "
                       f"(add \"bridge\" to the entry if it is another)")


class PlanError(ValueError):
    """The plan cannot be read; str() is one line naming where and what."""


@dataclass(frozen=True)
class PlanEntry:
    """One planned NIC of one guest."""
    vmid: int
    nic: str = "net0"
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

    @property
    def label(self) -> str:
        return label_for(self.type, self.vmid)

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        if self.address is None:
            return None
        return ipaddress.IPv4Network(f"{self.address}/{self.prefixlen}", strict=False)

    def to_nic(self) -> Nic:
        return Nic(key=self.nic, bridge=self.bridge, hwaddr=self.mac, ip=self.ip,
                   address=self.address, prefixlen=self.prefixlen, gw=self.gw, tag=self.vlan,
                   name=None)


# -- reading ------------------------------------------------------------------

def _show(value) -> str:
    """A plan value for a message: repr (escapes newlines and odd characters), shortened."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    return value.strip()[:64].encode("utf-8", "backslashreplace").decode("utf-8")


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
    """(raw ip, address, prefixlen, gw) for a planned ip/gw pair."""
    ip = _opt_str(ip, origin, f"{where}.ip")
    gw = _opt_str(gw, origin, f"{where}.gw") or None
    if not ip or ip in ("dhcp", "manual"):
        if gw:
            _gw(gw, origin, where)
        return ip or None, None, None, gw
    addr, sep, plen = ip.partition("/")
    try:
        a = ipaddress.IPv4Address(addr.strip())
        ok = not sep or (plen.isascii() and plen.isdigit() and len(plen) <= 2 and 0 <= int(plen) <= 32)
    except ValueError:
        ok = False
    if not ok:
        raise _err(origin, f"{where}.ip", f"{_show(ip)} is not dhcp, manual or an IPv4 address "
                   f"with /prefix like 10.0.0.151/24")
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
    return PlanEntry(vmid=vmid, nic=nic, bridge=_bridge(net.get("bridge"), origin, f"{where}.bridge"),
                     ip=ip, address=address, prefixlen=plen, gw=gw,
                     mac=_mac(mac, origin, f"{where}.mac"),
                     vlan=_vlan(net.get(vlan_key), origin, f"{where}.{vlan_key}"),
                     name=_clean_name(name), type=gtype, where=where)


def _from_lxc_configs(configs, origin) -> list[PlanEntry]:
    if not isinstance(configs, dict):
        raise _err(origin, "lxc_configs", "must be an object keyed by CTID")
    out = []
    for key, cfg in configs.items():
        where = f"lxc_configs[{json.dumps(key)}]"
        vmid = _vmid(key, origin, where)
        if not isinstance(cfg, dict):
            raise _err(origin, where, "must be an object with network_config")
        nets = cfg.get("network_config")
        if nets is None:
            continue                      # a container without a network: nothing to check
        if isinstance(nets, dict):
            nets = [nets]
        if not isinstance(nets, list) or len(nets) > 32:
            raise _err(origin, f"{where}.network_config", "must be an object {name, bridge, ip, gw} "
                       "or a list of up to 32 of them")
        for i, net in enumerate(nets):
            w = f"{where}.network_config" + (f"[{i}]" if len(nets) > 1 else "")
            if not isinstance(net, dict):
                raise _err(origin, w, "must be an object {name, bridge, ip, gw}")
            mac = net.get("mac_address", net.get("hwaddr", cfg.get("mac_address") if i == 0 else None))
            out.append(_entry(vmid, f"net{i}", net, mac, cfg.get("name"), "lxc", origin, w))
    return out


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
        e = _entry(vmid, nic, item, item.get("mac", item.get("hwaddr")), item.get("name"),
                   gtype, origin, where)
        if e.bridge is None:
            e = replace(e, bridge=DEFAULT_BRIDGE, bridge_default=True)
        out.append(e)
    return out


def parse_plan(data, origin: str = "plan") -> list[PlanEntry]:
    """Plan entries from parsed JSON (either form), sorted by VMID and NIC."""
    if isinstance(data, dict) and "lxc_configs" in data:
        entries = _from_lxc_configs(data["lxc_configs"], origin)
    elif isinstance(data, list):
        entries = _from_list(data, origin)
    else:
        raise PlanError(f"{origin}: not a plan: expected {{\"lxc_configs\": {{CTID: {{...}}}}}} or a "
                        f"list of {{vmid, nic, bridge, ip, mac, vlan}} entries (README 'Preflight')")
    seen: dict = {}
    for e in entries:
        k = (e.vmid, e.nic)
        if k in seen:
            raise _err(origin, e.where, f"{e.label} {e.nic} is planned twice (also at {seen[k]})")
        seen[k] = e.where
    return sorted(entries, key=lambda e: (e.vmid, int(e.nic[3:])))


def loads_plan(text, origin: str = "plan") -> list[PlanEntry]:
    """Plan entries from JSON text (str or bytes)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PlanError(f"{origin}: not UTF-8 text (byte {exc.start}); save the plan as UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{origin}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                        f"{FIX}") from None
    except (RecursionError, ValueError) as exc:
        raise PlanError(f"{origin}: JSON cannot be read ({type(exc).__name__}); {FIX}") from None
    try:
        return parse_plan(data, origin)
    except RecursionError:
        raise PlanError(f"{origin}: nested too deeply to be a plan; {FIX}") from None


def load_plan(path: str) -> list[PlanEntry]:
    """Plan entries from a file ("-": standard input)."""
    import sys
    try:
        if path == "-":
            return loads_plan(sys.stdin.buffer.read(), "<stdin>")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc.strerror}); check the path") from None
    return loads_plan(raw, path)


def select(entries: list[PlanEntry], vmids, origin: str = "plan") -> list[PlanEntry]:
    """The entries of the given CTIDs (all when none are given). Unknown CTID: PlanError."""
    if not vmids:
        return list(entries)
    known = sorted({e.vmid for e in entries})
    for v in vmids:
        if v not in known:
            listed = ", ".join(map(str, known[:20])) + (", ..." if len(known) > 20 else "")
            raise PlanError(f"CTID {v} is not in {origin} (it has {listed or 'no guests'}); "
                            f"check the CTID or the plan file")
    wanted = set(vmids)
    return [e for e in entries if e.vmid in wanted]


def to_guests(entries: list[PlanEntry]) -> list[Guest]:
    """Plan entries as Guest objects (one per VMID), for the probe machinery of check.py."""
    by: dict[int, list[PlanEntry]] = {}
    for e in entries:
        by.setdefault(e.vmid, []).append(e)
    return [Guest(vmid=v, type=es[0].type, name=es[0].name, nics=tuple(e.to_nic() for e in es))
            for v, es in by.items()]


# -- the findings -------------------------------------------------------------

def _labels(items) -> str:
    return ", ".join(items)


@dataclass(frozen=True)
class Issue:
    """One problem with one planned NIC. vmids: every guest involved, this one first."""
    kind: str
    vmid: int
    nic: str
    vmids: tuple[int, ...]
    detail: str
    mac: str | None = None
    node: str | None = None          # the other guest's node, when one is involved


KINDS = ("plan-duplicate-ip", "plan-duplicate-mac", "ip-in-use", "mac-in-use", "vmid-in-use",
         "network-address", "broadcast-address", "gateway-address", "gateway-outside-subnet",
         "host-address", "node-address", "dhcp-pool")


def check_plan(entries: list[PlanEntry], selected: list[PlanEntry] | None = None,
               cluster: list[Guest] = (), *, dhcp_ranges=(), host_ips=(), node_ips=None,
               ignored=None) -> dict[tuple[int, str], list[Issue]]:
    """Config-level problems of the selected entries, against the whole plan and the cluster.

    Same address means the same IPv4 in the same VLAN (untagged is one VLAN):
    bridge names differ between nodes, VLAN tags do not. An existing guest
    with the same VMID and type is the guest being re-applied, never a
    conflict with itself. `ignored(address)` (settings `ignore`) silences
    "is a gateway of other guests", for a router guest that is that gateway.
    """
    selected = entries if selected is None else selected
    node_ips = node_ips or {}
    host_ips = set(host_ips)
    out: dict[tuple[int, str], list[Issue]] = {(e.vmid, e.nic): [] for e in selected}

    by_ip: dict = {}
    by_mac: dict = {}
    gateways: dict = {}                # (gw, vlan) -> [labels]
    for e in entries:
        if e.address:
            by_ip.setdefault((e.address, e.vlan), []).append(e)
        if e.mac:
            by_mac.setdefault(e.mac, []).append(e)
        if e.gw:
            gateways.setdefault((e.gw, e.vlan), []).append((e.vmid, f"planned {e.label} {e.nic}"))
    c_ip: dict = {}
    c_mac: dict = {}
    c_vmid: dict = {}
    for g in cluster:
        c_vmid.setdefault(g.vmid, g)
        for n in g.nics:
            if n.address:
                c_ip.setdefault((n.address, n.tag), []).append((g, n))
            if n.hwaddr:
                c_mac.setdefault(n.hwaddr, []).append((g, n))
            if n.gw and n.address:
                gateways.setdefault((n.gw, n.tag), []).append((g.vmid, g.describe(n.key)))

    for e in selected:
        issues = out[(e.vmid, e.nic)]

        def add(kind, detail, others=(), mac=None, node=None, _e=e, _issues=issues):
            vmids = (_e.vmid,) + tuple(sorted({v for v in others if v != _e.vmid}))
            _issues.append(Issue(kind, _e.vmid, _e.nic, vmids, f"{_e.label} {_e.nic}: {detail}", mac, node))

        existing = c_vmid.get(e.vmid)
        if existing is not None and existing.type != e.type:
            add("vmid-in-use", f"VMID {e.vmid} is already {existing.describe()}; pick a free VMID "
                f"(pvesh get /cluster/nextid)", [existing.vmid], node=existing.node)
        if e.address:
            twins = [o for o in by_ip[(e.address, e.vlan)] if (o.vmid, o.nic) != (e.vmid, e.nic)]
            if twins:
                add("plan-duplicate-ip", f"{e.address} is also planned for "
                    f"{_labels(f'{o.label} {o.nic}' for o in twins)}", [o.vmid for o in twins])
            users = [(g, n) for g, n in c_ip.get((e.address, e.vlan), [])
                     if not (g.vmid == e.vmid and g.type == e.type)]
            for g, n in users:
                add("ip-in-use", f"{e.address} is already configured on {g.describe(n.key)}",
                    [g.vmid], node=g.node)
            for kind, words in address_problems(e.address, e.prefixlen, e.gw):
                add(kind, words)
            gw_of = [(v, lab) for v, lab in gateways.get((e.address, e.vlan), []) if v != e.vmid]
            if gw_of and not (ignored and ignored(e.address)):
                add("gateway-address", f"{e.address} is the gateway of "
                    f"{_labels(lab for _v, lab in gw_of[:5])}" + (" and others" if len(gw_of) > 5 else ""),
                    [v for v, _l in gw_of])
            if e.address in host_ips:
                add("host-address", f"{e.address} is one of this host's own addresses")
            if e.address in node_ips:
                add("node-address", f"{e.address} is the address of cluster node {node_ips[e.address]}")
            pool = dhcp_pool(e.address, dhcp_ranges)
            if pool:
                add("dhcp-pool", f"{e.address} is inside the DHCP pool {pool[0]}-{pool[1]} (dhcp_ranges): "
                    f"the DHCP server may hand it to another device; move it out of the pool or "
                    f"reserve it (phoenix-hook reservations)")
        if e.mac:
            twins = [o for o in by_mac[e.mac] if (o.vmid, o.nic) != (e.vmid, e.nic)]
            if twins:
                add("plan-duplicate-mac", f"MAC {e.mac} is also planned for "
                    f"{_labels(f'{o.label} {o.nic}' for o in twins)}", [o.vmid for o in twins], mac=e.mac)
            users = [(g, n) for g, n in c_mac.get(e.mac, [])
                     if not (g.vmid == e.vmid and g.type == e.type)]
            for g, n in users:
                add("mac-in-use", f"MAC {e.mac} is already used by {g.describe(n.key)}",
                    [g.vmid], mac=e.mac, node=g.node)
    return out

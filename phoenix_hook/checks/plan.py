"""An orchestrator's plan and what is wrong with it. Pure.

Reading the plans (three shapes, several files) is planread.py; its names are
re-exported here. check_plan finds, for each planned NIC, the problems the
issue lists (each naming every guest involved): duplicates within the plan,
also across plan files (naming both files and places), IPs and MACs that
existing guests already use, network/broadcast/gateway addresses, gateways
outside the subnet, the host's and the cluster nodes' own addresses, and
addresses inside a DHCP pool.
"""
from __future__ import annotations

from phoenix_hook.records import dataclass

from phoenix_hook.checks.addressing import address_problems, dhcp_pool
from phoenix_hook.checks.planread import (  # noqa: F401 (the plan API, re-exported)
    DEFAULT_BRIDGE, DEFAULT_BRIDGE_NOTE, DEFAULT_BRIDGE_NOTE_NO_PROBE, FIX, MAX_VMID, PlanEntry, PlanError,
    PlanNote, combine, load_plan, loads_plan, nic_order, parse_plan, read_plan, read_plan_file, reads_plan)
from phoenix_hook.pve.guest import Guest


def select(entries: list[PlanEntry], vmids, origin: str = "plan", notes=()) -> list[PlanEntry]:
    """The entries of the given guests (all when none are given). A guest the plan does not
    have (neither entries nor notes): PlanError."""
    if not vmids:
        return list(entries)
    known = sorted({e.vmid for e in entries} | {n.vmid for n in notes})
    for v in vmids:
        if v not in known:
            listed = ", ".join(map(str, known[:20])) + (", ..." if len(known) > 20 else "")
            raise PlanError(f"guest {v} is not in {origin} (it has {listed or 'no guests'}); "
                            f"check the guest ID or the plan file")
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

    several_files = len({e.origin for e in entries}) > 1

    def twin_words(e, others) -> str:
        """The other entries; with several plan files, where each one is, and this one too."""
        if not several_files:
            return _labels(f"{o.label} {o.nic}" for o in others)
        return (_labels(f"{o.label} {o.nic} in {o.located}" for o in others)
                + f" (this one: {e.located})")

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
                add("plan-duplicate-ip", f"{e.address} is also planned for {twin_words(e, twins)}",
                    [o.vmid for o in twins])
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
                add("plan-duplicate-mac", f"MAC {e.mac} is also planned for {twin_words(e, twins)}",
                    [o.vmid for o in twins], mac=e.mac)
            users = [(g, n) for g, n in c_mac.get(e.mac, [])
                     if not (g.vmid == e.vmid and g.type == e.type)]
            for g, n in users:
                add("mac-in-use", f"MAC {e.mac} is already used by {g.describe(n.key)}",
                    [g.vmid], mac=e.mac, node=g.node)
    return out

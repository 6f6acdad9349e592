"""A check, start to finish: guests -> addresses -> host / config / wire findings -> Report.

The decisions are the pure functions at the top (plan_nic, config_warnings,
wire_finding); `run_check` at the bottom is the orchestration that touches
the host (hostnet), the wire (wire + probe) and the cluster's configs.
"""
from __future__ import annotations

import _thread  # not threading: one loader thread needs none of it (1 ms of a hook run)
import time
from phoenix_hook.records import dataclass, field, replace

from phoenix_hook.net import acd
from phoenix_hook.pve.guest import Guest, Nic
from phoenix_hook.checks.report import Finding, GuestResult, NicResult, Report


CLUSTER_WAIT_S = 0.5       # how long a decided hook waits for the other guests' configs


@dataclass(frozen=True)
class HostFacts:
    """What the host looks like: interfaces by name, its own IPv4s, IPv6s and MACs."""
    links: dict = field(default_factory=dict)        # name -> hostnet.Link | None
    local_ips: frozenset = frozenset()
    macs: frozenset = frozenset()
    self_vlans: dict = field(default_factory=dict)   # VLAN-aware bridge -> its own VIDs | None
    local_ips6: frozenset = frozenset()              # (IPv6 address, interface)
    vlan_devs: dict = field(default_factory=dict)    # 802.1Q device -> (VID, lower device)


def read_host_facts(ifnames) -> HostFacts:
    from phoenix_hook.net import hostnet
    links = {n: hostnet.link(n) for n in ifnames}
    self_vlans = {n: hostnet.bridge_self_vlans(n) for n, link in links.items()
                  if link is not None and link.vlan_filtering}
    return HostFacts(links=links, local_ips=hostnet.local_ipv4(), macs=hostnet.all_macs(),
                     self_vlans=self_vlans, local_ips6=hostnet.local_ipv6(),
                     vlan_devs=hostnet.vlan_devices())


def interfaces_needed(guests) -> set[str]:
    """Bridges the NICs sit on, and PVE's per-VLAN bridges vmbrXvN (REFERENCE 4)."""
    names = set()
    for g in guests:
        for n in g.nics:
            if n.bridge:
                names.add(n.bridge)
                if n.tag is not None:
                    names.add(f"{n.bridge}v{n.tag}")
    return names


def _nic_result(nic: Nic, verdict: str, note: str = "", conflicts=None, family: int = 4) -> NicResult:
    return NicResult(nic=nic.key, ip=nic.address if family == 4 else nic.address6, bridge=nic.bridge,
                     vlan=nic.tag, verdict=verdict, note=note, conflicts=list(conflicts or []),
                     family=family)


def families(nic: Nic) -> tuple[int, ...]:
    """The address families a NIC gets a result for: IPv4 as before IPv6 support,
    and IPv6 when ip6= is set on a NIC that could be read. An IPv6-only NIC (ip6=
    but no ip= at all) gets no "no IPv4 address configured" line besides."""
    if nic.ip6 is None or nic.error or nic.skip:
        return (4,)
    return (6,) if nic.ip_mode == "none" else (4, 6)


def _host_holds6(address: str, nic: Nic, facts: HostFacts) -> bool:
    """Does this host hold the IPv6 address on the guest's segment? A global
    address anywhere counts; a link-local one only on the guest's own link
    (its bridge, or PVE's per-VLAN bridge / VLAN device for its tag)."""
    import ipaddress
    if not ipaddress.IPv6Address(address).is_link_local:
        return any(a == address for a, _dev in facts.local_ips6)
    links = {nic.bridge} if nic.tag is None else {f"{nic.bridge}v{nic.tag}", f"{nic.bridge}.{nic.tag}"}
    return any(a == address and dev in links for a, dev in facts.local_ips6)


def fix_hint(guest: Guest, nic: Nic) -> str:
    """How the admin fixes a NIC's config: pct set / qm set, or the raw lines themselves."""
    if nic.raw:
        return f"fix the {nic.key}.* lines in the guest's config ({guest.label})"
    if guest.type == "qemu":
        return f"fix it with qm set {guest.vmid} --{nic.key} ... (or --ipconfig{nic.index})"
    return f"fix it with pct set {guest.vmid} --{nic.key} ..."


def plan_nic(guest: Guest, nic: Nic, settings, facts: HostFacts,
             running: bool = False, family: int = 4) -> NicResult | acd.Candidate:
    """Decide what to do with one NIC's IPv4 (family 4) or IPv6 (family 6) address:
    a final result now, or a Candidate to probe (ARP, or DAD for IPv6)."""
    if nic.error:
        # No "net0 of CT 951" here: every place that shows the note names the guest and NIC.
        return _nic_result(nic, "error", f"{nic.error}; {fix_hint(guest, nic)}")

    def result(verdict, note="", conflicts=None):
        return _nic_result(nic, verdict, note, conflicts, family)
    if nic.skip:
        return result("skipped", nic.skip)
    if family == 6:
        mode, address = nic.ip6_mode, nic.address6
        if mode in ("auto", "dhcp", "manual"):
            return result("skipped", f"ip6={mode}, no static IPv6 address to probe")
        if mode == "unusable":
            return result("skipped", nic.note6)
        if mode == "none":
            return result("skipped", "no IPv6 address configured")
    else:
        mode, address = nic.ip_mode, nic.address
        if mode in ("dhcp", "manual"):
            return result("skipped", f"ip={mode}, no static IPv4 address to probe")
        if mode == "unusable":
            return result("skipped", nic.note4)
        if mode == "none":
            return result("skipped", "no IPv4 address configured")
    if not nic.bridge:
        return result("skipped", f"{address} has no bridge, nothing to probe on")
    if settings.ignore and settings.ignored(address):
        return result("skipped", f"{address} is in the ignore list of the settings")
    if (_host_holds6(address, nic, facts) if family == 6 else address in facts.local_ips):
        host = Finding(source="host", detail=f"{address} is configured on this host itself",
                       line="is one of this host's own addresses")
        return result("conflict", conflicts=[host])
    br = facts.links.get(nic.bridge)
    if br is None:
        return result("error", f"bridge {nic.bridge} does not exist on this host")
    if not br.up:
        return result("error", f"bridge {nic.bridge} is down (ip link set {nic.bridge} up)")
    if br.noarp:
        # IFF_NOARP turns off IPv6 neighbour discovery as well (net/ipv6/ndisc.c)
        return result("error", f"{nic.bridge} has ARP turned off (NOARP)")
    iface, tagged, src, rx_untagged, via_port = nic.bridge, nic.tag is not None, br.mac, False, False
    if nic.tag is not None and br.vlan_filtering and br.vlan_protocol != 0x8100:
        # An 802.1ad (QinQ) bridge would take our 802.1Q tag for untagged
        # traffic in its PVID: the probe would ask the wrong VLAN.
        return result("error", f"{nic.bridge} tags VLANs with 802.1ad "
                      f"(vlan_protocol {br.vlan_protocol:#06x}); phoenix-hook probes 802.1Q only")
    if nic.tag is not None and br.vlan_filtering:
        # VLAN-aware bridge: our tagged frame passes the bridge's ingress
        # filter only if the bridge itself is in that VLAN (pve-common
        # Network.pm; REFERENCE section 4). On a standard PVE bridge it is
        # not (bridge-vids go to the ports only): then the probe goes through
        # a temporary port in that VLAN, plugged as PVE plugs the guest
        # (net/probeport.py says why a port and not the bridge itself).
        vids = facts.self_vlans.get(nic.bridge)
        if vids is None:
            return result("error", f"cannot read the VLANs of {nic.bridge} itself "
                          f"(bridge -j vlan show dev {nic.bridge} failed)")
        if nic.tag in vids:
            rx_untagged = vids[nic.tag]
        else:
            tagged, via_port = False, True
    if nic.tag is not None and not br.vlan_filtering:
        # Non-VLAN-aware bridge: PVE creates vmbrXvN for tag N when the first
        # guest on that VLAN is plugged (pve-common Network.pm); if it exists,
        # probe untagged there, else send tagged frames on the bridge itself.
        vname = f"{nic.bridge}v{nic.tag}"
        vbr = facts.links.get(vname)
        if vbr is not None:
            # Its uplink (eno1.N) takes VLAN N's frames off vmbr0: a tagged
            # probe there would hear nothing, so an unusable vmbrXvN is an error.
            if not vbr.up or vbr.noarp:
                return result("error", f"{vname} (PVE's bridge for VLAN {nic.tag}) is "
                              f"{'down' if not vbr.up else 'NOARP'}, so VLAN {nic.tag} cannot be probed")
            iface, tagged, src = vname, False, vbr.mac
    link = facts.links[iface]
    if link.uplinks and not any(up for _name, up in link.uplinks):
        # The segment's way out is down (a switch still booting after a power
        # cut): only local ports would hear the probe, so silence proves nothing.
        names = ", ".join(name for name, _up in link.uplinks)
        return result("error", f"no uplink of {iface} has carrier ({names}), "
                      f"so the LAN cannot be probed")
    if not link.carrier:
        # No port at all is up, and none leads out: nobody else can be on it.
        return result("clear", f"no port of {iface} is up, so nobody else is on it")
    also = ()
    if nic.tag is not None and iface == nic.bridge:
        # An uplink with its own VLAN device for the tag (an admin's eno1.N and
        # no vmbrXvN) takes the LAN's answers off the bridge: hear them there.
        from phoenix_hook.net.hostnet import vlan_taps
        also = tuple((port, nic.tag) for port in vlan_taps(br, facts.vlan_devs, nic.tag))
    return acd.Candidate(key=nic.key, ip=address, iface=iface, src_mac=src, vlan=nic.tag,
                         tagged=tagged, guest_mac=nic.hwaddr, guest_running=running,
                         rx_untagged=rx_untagged, family=family, via_port=via_port, also_hear=also)


def config_warnings(guest: Guest, nic: Nic, cluster, family: int = 4) -> list[Finding]:
    """Other guests configured with the same static address on the same bridge and VLAN.

    A warning only: two configs may both be stopped, or one may be a template.
    family 6 compares the static ip6= addresses instead.
    """
    out = []
    mine = nic.address if family == 4 else nic.address6
    if mine is None:
        return out
    for other in cluster:
        if other.vmid == guest.vmid:
            continue
        for on in other.nics:
            theirs = on.address if family == 4 else on.address6
            if theirs == mine and on.bridge == nic.bridge and on.tag == nic.tag:
                out.append(Finding(source="config", vmid=other.vmid, node=other.node,
                                   detail=f"{other.describe()} is also configured with {mine} ({on.key})"))
    return out


def mac_owners(cluster) -> dict[str, list[Guest]]:
    owners: dict[str, list[Guest]] = {}
    for g in cluster:
        for n in g.nics:
            if n.hwaddr:
                owners.setdefault(n.hwaddr, []).append(g)
    return owners


def wire_finding(c: acd.Conflict, owners: dict, describe, self_vmid: int | None = None) -> Finding:
    """Turn a wire conflict into words: the MAC, its vendor and, where known, its guest.

    The guest being checked is never named as the owner: for its own MAC
    the useful name is another guest configured with it (a clone).
    """
    vendor, words = describe(c.mac)
    whose = ""
    for g in owners.get(c.mac, []):
        if g.vmid == self_vmid:
            continue
        whose = f", the MAC of {g.label}" + (f" ({g.name})" if g.name else "") + (
            f" on node {g.node}" if g.node else "")
        break
    if c.kind == "same-mac":
        line = (f"answers from this guest's own MAC {c.mac}: another copy of this guest is up"
                + (f" (maybe{whose[1:]})" if whose else ""))
    elif c.kind == "probe":
        line = f"is being claimed right now by {c.mac} ({words}{whose}), which is probing for it" + (
            " (IPv6 DAD)" if c.family == 6 else "")
    else:
        line = f"is in use by {c.mac} ({words}{whose})"
    return Finding(source="ndp" if c.family == 6 else "arp", mac=c.mac, vendor=vendor,
                   detail=f"{c.mac} {c.detail}{whose}", line=line)


@dataclass
class Options:
    timeout: int | str | None = None      # overrides settings/guest probe_timeout_ms
    stop_on_first: bool = True
    deadline: float | None = None         # absolute, time.monotonic()
    running: object = None                # callable(vmid, type) -> bool, or None (hook: never)
    claim: object = None                  # callable(guest, nic, address) -> (other vmid, age) | None (hook)


def run_check(guests: list[Guest], settings, opts: Options, *, load_cluster=None,
              facts: HostFacts | None = None, wire_factory=None, describe=None,
              port_factory=None) -> Report:
    """Check guests: plan every NIC, probe the candidates, merge config warnings.

    load_cluster() (every guest of the cluster) runs in a thread while the
    probe is on the wire: reading 2000 configs from pmxcfs should not add
    to the start time.
    """
    from phoenix_hook.net import probe, vendor
    describe = describe or vendor.describe
    if facts is None:
        facts = read_host_facts(interfaces_needed(guests))
    cluster_box: dict = {}
    loaded = None                              # a lock the loader releases when done
    if load_cluster is not None:
        loaded = _thread.allocate_lock()
        loaded.acquire()

        def _load():
            try:
                cluster_box["guests"] = load_cluster()
            except Exception as exc:          # a warning source only; never decides
                cluster_box["error"] = str(exc)
            finally:
                loaded.release()
        _thread.start_new_thread(_load, ())    # never joined at exit, as a daemon thread

    results: dict[int, GuestResult] = {}
    groups: dict = {}                          # schedule timeout -> [(guest, Candidate)]
    # One NicResult per (NIC, address family): the IPv4 one as always, and
    # one for a NIC's ip6= when set; each static address is its own Candidate.
    for g in guests:
        gr = GuestResult(vmid=g.vmid, type=g.type, name=g.name)
        if g.pending:
            gr.notes.append("has pending network changes: checking the config it will start with")
        gr.notes += list(g.errors)
        if not g.nics:
            gr.notes.append("has no network interfaces")
        results[g.vmid] = gr
        running = bool(opts.running and opts.running(g.vmid, g.type))
        for nic in g.nics:
            for family in families(nic):
                planned = plan_nic(g, nic, settings, facts, running, family)
                held = None
                # Claim whatever this start will use: a probed address, or one
                # found clear without probing (a bridge with no port up yet).
                if opts.claim is not None and (not isinstance(planned, NicResult) or planned.verdict == "clear"):
                    held = opts.claim(g, nic, planned.ip)
                if held:
                    other, age = held
                    gr.nics.append(_nic_result(nic, "conflict", family=family, conflicts=[Finding(
                        source="host", detail=f"guest {other} on this node is starting with "
                        f"{planned.ip} right now (claimed {age:.0f} s ago)",
                        line=f"is being taken by guest {other}, which this node started "
                             f"{age:.0f} s ago with the same address")]))
                elif isinstance(planned, NicResult):
                    gr.nics.append(planned)
                else:
                    gr.nics.append(_nic_result(nic, "pending", family=family))
                    timeout = opts.timeout or settings.for_guest(g.vmid)[1]
                    groups.setdefault(timeout, []).append((g, planned))

    hits: dict = {}                            # (vmid, nic, family) -> [acd.Conflict]
    for timeout, items in groups.items():
        hits.update(_probe_group(items, timeout, facts, opts, results, wire_factory, probe, port_factory))

    cluster = []
    if loaded is not None:
        # The other guests' configs only add warnings and names: they may
        # delay a decided answer a little, never up to the deadline (a hung
        # pmxcfs read would otherwise hold every start that long).
        budget = CLUSTER_WAIT_S
        if opts.deadline is not None:
            budget = min(budget, max(0.0, opts.deadline - time.monotonic()))
        finished = loaded.acquire(True, budget if opts.stop_on_first else -1)
        cluster = cluster_box.get("guests", [])
        why = cluster_box.get("error")
        if not finished:
            why = f"not read within {budget:g} s"
        if why:
            for gr in results.values():
                gr.notes.append(f"could not read the other guests' configs ({why}): "
                                f"config-level duplicates not checked")
    owners = mac_owners(cluster)
    by_vmid = {g.vmid: g for g in guests}
    for gr in results.values():
        g = by_vmid[gr.vmid]
        for nr in gr.nics:
            nr.warnings = config_warnings(g, g.nic(nr.nic), cluster, nr.family)
            nr.conflicts += [wire_finding(h, owners, describe, g.vmid)
                             for h in hits.get((g.vmid, nr.nic, nr.family), [])]
    return Report(guests=[results[g.vmid] for g in guests])


def _probe_group(items, timeout, facts, opts, results, wire_factory, probe_mod, port_factory=None) -> dict:
    """Probe one group of candidates that share a schedule; set each NIC's verdict.

    Candidates via_port get their temporary port first (one per bridge and
    VLAN, deleted again before this returns, whatever happens); a port that
    cannot be made, or breaks during the probe, makes its NICs "could not
    check", never "free".
    """
    from phoenix_hook.net.wire import Wire, WireError
    ports: dict = {}                           # (bridge, vid) -> ProbePort | error text
    try:
        cands, port_of = [], {}
        for g, c in items:
            key = _run_key(g, c)
            if c.via_port:
                pp = ports.get((c.iface, c.vlan))
                if pp is None:
                    pp = ports[(c.iface, c.vlan)] = _open_port(c.iface, c.vlan, port_factory)
                if isinstance(pp, str):
                    continue                   # reported below
                port_of[key] = pp
                c = replace(c, iface=pp.peer, src_mac=pp.mac)
            cands.append(replace(c, key=key))
        own = facts.macs | {pp.mac for pp in ports.values() if not isinstance(pp, str)}
        run = acd.ProbeRun(cands, acd.schedule_for(timeout), own_macs=own, stop_on_first=opts.stop_on_first)
        failure = None
        if cands:
            try:
                ifaces = {c.iface for c in cands} | {i for c in cands for i, _v in c.also_hear}
                # The real wire only takes frames about the probed addresses: a storm of
                # ARP for other addresses never fills its buffer (wire.narrow_filter).
                wire = wire_factory(ifaces) if wire_factory else Wire(ifaces, only=[c.ip for c in cands])
                try:
                    probe_mod.run(run, wire, deadline=opts.deadline)
                finally:
                    wire.close()
            except WireError as exc:
                failure = f"could not probe: {exc.strerror or exc}"
            except TimeoutError:
                failure = "the deadline passed before probing finished"
        broken = {key: pp.broken() for key, pp in port_of.items()}
    finally:
        for pp in ports.values():
            if not isinstance(pp, str):
                pp.close()
    window_ms = round(run.window * 1000)
    found = {}
    for g, c in items:
        nr = next(n for n in results[g.vmid].nics if (n.nic, n.family) == (c.key, c.family))
        key = _run_key(g, c)
        hits = run.conflicts.get(key, [])
        port_error = ports.get((c.iface, c.vlan)) if c.via_port else None
        if hits:
            nr.verdict = "conflict"
            found[(g.vmid, c.key, c.family)] = hits
        elif isinstance(port_error, str):
            nr.verdict, nr.note = "error", port_error
        elif failure:
            nr.verdict, nr.note = "error", failure
        elif broken.get(key):
            nr.verdict, nr.note = "error", broken[key]
        elif run.unproven(key):
            nr.verdict, nr.note = "error", (
                f"the kernel dropped {run.unproven(key)} received frames on {c.iface} while we listened "
                f"(a flood of ARP/ND filled the receive buffer), so hearing no answer proves nothing")
        elif run.conflicts and opts.stop_on_first:
            nr.verdict, nr.note = "skipped", "not finished: probing stopped at the first conflict"
        else:
            nr.verdict = "clear"
            nr.note = f"no answer in {window_ms} ms, {run.sent.get(key, 0)} probes" + (
                f", through a temporary port in VLAN {c.vlan}" if c.via_port else "")
    return found


def _open_port(bridge: str, vid: int, factory=None):
    """A temporary port in VLAN vid on bridge (net/probeport.py), or the reason there is none."""
    from phoenix_hook.net import probeport
    try:
        return (factory or probeport.open_port)(bridge, vid)
    except probeport.PortError as exc:
        return str(exc)


def _run_key(g: Guest, c: acd.Candidate) -> str:
    """A candidate's key in a ProbeRun: unique per guest, NIC and address family."""
    return f"{g.vmid}/{c.key}" + ("/ip6" if c.family == 6 else "")

"""`phoenix-hook locate ADDRESS`: who answers for it, where they are plugged in, who leased it, whose it is.

Probes the address (RFC 5227 ARP probes for IPv4, a DAD Neighbor Solicitation
for IPv6, the hook's own frames) from the owner guest's bridge and VLAN, else
the bridge whose subnet holds it, and keeps every MAC that answers during the
window. Each MAC is placed with the bridge's forwarding database (net/fdb.py)
and matched to its DHCP lease (dhcp_leases); the decisions are checks/locate.py's.

JSON (one object): {"address", "owner": {"vmid", "type", "node", "nic", "name", "mac"} | null,
  "answers": [{"mac", "vendor", "port", "where", "vmid", "nic", "lease": {"ip", "hostname",
  "expires", "file"} | null, "kind", "mac_owner"}], "verdict": "owner" | "foreign" | "silent",
  "also", "bridge", "iface", "vlan", "window_ms", "notes"}
Exit: 0 only the owner answered, or nobody; 1 someone else answered; 2 bad usage; 3 could not check.
"""
from __future__ import annotations

import json
import sys
import time
from phoenix_hook.records import replace

from phoenix_hook.cli.main import CannotCheck, UsageError, check_timeout_ms, load_settings


def add_parser(sub):
    from phoenix_hook.pve import sources
    p = sub.add_parser("locate", help="find who answers for an address and where it is plugged in",
                       description="Probe one IPv4 or IPv6 address from the right bridge and VLAN, "
                       "collect every answer, and name for each answering MAC its vendor, the "
                       "bridge port it sits behind (a guest's veth/tap port, an uplink such as eno1, "
                       "or this host), its DHCP lease (dhcp_leases), and the guest or node the "
                       "address belongs to. Exit 0 only the owner (or nobody) answered, 1 a device "
                       "other than the owner answered, 2 bad usage, 3 could not check.")
    p.add_argument("address", metavar="ADDRESS", help="the IPv4 or IPv6 address, e.g. 10.0.0.219")
    p.add_argument("--json", action="store_true",
                   help="one JSON object (README 'Find the device: phoenix-hook locate')")
    p.add_argument("--bridge", metavar="BRIDGE", help="probe from this bridge (default: the owner "
                   "guest's bridge, else the bridge whose subnet holds the address)")
    p.add_argument("--vlan", type=int, metavar="N", help="with --bridge: probe in VLAN N (802.1Q tag)")
    p.add_argument("--timeout-ms", type=int, metavar="MS",
                   help="probe window, overriding probe_timeout_ms (50-60000)")
    sources.add_argument(p)
    return p


def _check_options(args) -> None:
    check_timeout_ms(args.timeout_ms)
    if args.vlan is not None and not 1 <= args.vlan <= 4094:
        raise UsageError(f"--vlan {args.vlan} is not a VLAN ID; use 1 to 4094")
    if args.vlan is not None and not args.bridge:
        raise UsageError("--vlan needs --bridge: name the bridge the VLAN is on (--bridge vmbr0 --vlan 20)")


def _host_addresses():
    """This host's addresses: [(ip, prefixlen, ifname, mac)] (`ip -j addr`; /proc without prefixes)."""
    from phoenix_hook.net import hostnet, neigh
    addrs = neigh.read_addresses()
    if addrs is not None:
        return [(a.ip, a.prefixlen, a.ifname, a.mac) for a in addrs]
    out = [(ip, None, None, None) for ip in sorted(hostnet.local_ipv4())]
    out += [(ip, None, dev, None) for ip, dev in sorted(hostnet.local_ipv6())]
    return out


def _bridges() -> set[str]:
    import os

    from phoenix_hook.net import hostnet
    try:
        names = os.listdir(hostnet.SYS_NET)
    except OSError:
        return set()
    return {n for n in names if os.path.isdir(os.path.join(hostnet.SYS_NET, n, "bridge"))}


def _probe(address, family, bridge, vlan, settings, timeout):
    """(answers heard [acd.Conflict], iface, tag, window_ms, facts, notes). The wire part."""
    from phoenix_hook.checks.check import plan_nic, read_host_facts
    from phoenix_hook.net import acd, probe
    from phoenix_hook.net.wire import Wire, WireError
    from phoenix_hook.pve.guest import Guest, Nic

    facts = read_host_facts({bridge} | ({f"{bridge}v{vlan}"} if vlan is not None else set()))
    # plan_nic picks the interface and tagging exactly as the hook does; it is asked
    # for a candidate only: the host's own addresses and dead uplinks are told apart here.
    # (Uplinks stay listed, as if up: an admin's eno1.N on one is where VLAN N's answers go.)
    lenient = replace(facts, local_ips=frozenset(), local_ips6=frozenset(),
                      links={k: (replace(v, uplinks=tuple((n, True) for n, _up in v.uplinks)) if v else v)
                             for k, v in facts.links.items()})
    a = str(address)
    nic = Nic(key="locate", bridge=bridge, tag=vlan, ip=f"{a}/32" if family == 4 else None,
              address=a if family == 4 else None, ip6=f"{a}/128" if family == 6 else None,
              address6=a if family == 6 else None, prefixlen=32 if family == 4 else None,
              prefixlen6=128 if family == 6 else None)
    planned = plan_nic(Guest(vmid=0), nic, replace(settings, ignore=()), lenient, running=False, family=family)
    notes = []
    if not isinstance(planned, acd.Candidate):
        if planned.verdict == "clear":          # no port of the bridge is up: nobody to answer
            return [], bridge, vlan, 0, facts, [planned.note], 0
        raise CannotCheck(f"cannot probe {a}: {planned.note}")
    cand = replace(planned, guest_mac=None)     # the owner's own answer counts here
    link = facts.links.get(cand.iface)
    if link is not None and link.uplinks and not any(up for _n, up in link.uplinks):
        names = ", ".join(n for n, _up in link.uplinks)
        notes.append(f"no uplink of {cand.iface} has carrier ({names}): only this host's guests could answer")
    port, own = None, facts.macs
    try:
        if cand.via_port:
            # A standard VLAN-aware bridge is not in the VLAN itself: probe through a
            # temporary port in it, as the hook does (net/probeport.py).
            from phoenix_hook.net import probeport
            try:
                port = probeport.open_port(cand.iface, cand.vlan)
            except probeport.PortError as exc:
                raise CannotCheck(f"cannot probe {a}: {exc}") from None
            cand, own = replace(cand, iface=port.peer, src_mac=port.mac), own | {port.mac}
        run = acd.ProbeRun([cand], acd.schedule_for(timeout), own_macs=own, stop_on_first=False,
                           collect=True)
        try:
            with Wire({cand.iface} | {i for i, _v in cand.also_hear}) as wire:
                probe.run(run, wire)
        except WireError as exc:
            raise CannotCheck(f"could not probe {a} on {cand.iface}: {exc.strerror or exc}") from None
        if port is not None and port.broken():
            raise CannotCheck(f"cannot probe {a}: {port.broken()}")
    finally:
        if port is not None:
            port.close()
    # The bridge's forwarding database places the answers: VLAN N's entries on a VLAN-aware bridge.
    tag = cand.vlan if cand.tagged or cand.via_port else None
    iface = bridge if cand.via_port else cand.iface
    lost = sum(run.dropped.get(i, 0) for i in dict.fromkeys(i for i, _v in cand.hears))
    if lost:
        # Issue 8's rule, as in the hook and scan: lost frames are never silence. A device
        # that answered may be among them, so a "silent" or owner-only verdict is unproven.
        notes.append(f"the kernel dropped {lost} received frames on {cand.iface} while we listened "
                     f"(a flood?); an answer may be among them")
    return run.conflicts.get(cand.key, []), iface, tag, round(run.window * 1000), facts, notes, lost


def run(args) -> int:
    from phoenix_hook.checks import answers as answer_words
    from phoenix_hook.checks import leases as lease_mod
    from phoenix_hook.checks import locate
    from phoenix_hook.checks.owners import mac_claims
    from phoenix_hook.net import fdb, vendor
    from phoenix_hook.pve import files as pve, sources

    settings = load_settings(args)
    _check_options(args)
    try:
        address = locate.parse_address(args.address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    a, family = address.compressed, address.version
    source, guests = sources.read_guests(settings, args.source)
    try:
        nodes = sources.node_addresses(source)
    except pve.SourceError as exc:
        raise CannotCheck(str(exc)) from None
    host = _host_addresses()
    owners = locate.owners_of(a, guests, settings.node, [(ip, dev, mac) for ip, _p, dev, mac in host], nodes)
    owner = owners[0] if owners else None
    if args.bridge:
        bridge, vlan, why = args.bridge, args.vlan, "--bridge"
    else:
        hit = locate.where_to_probe(a, owner, [(ip, p, dev) for ip, p, dev, _m in host if p is not None],
                                    _bridges(), guests)
        if hit is None:
            raise UsageError(f"no bridge of this host is on a subnet holding {a}, and no guest is "
                             f"configured with it; name one: phoenix-hook locate {a} --bridge vmbr0 "
                             f"[--vlan N]")
        bridge, vlan, why = hit
    if address.is_link_local:
        # a link-local address is one per link (RFC 4291 2.5.6): this host holds it here only
        # on the bridge probed, PVE's vmbrXvN or a vmbrX.N for its VLAN
        here = {bridge} | ({f"{bridge}v{vlan}", f"{bridge}.{vlan}"} if vlan is not None else set())
        host = [h for h in host if h[2] in here]
        owners = locate.owners_of(a, guests, settings.node, [(ip, dev, mac) for ip, _p, dev, mac in host],
                                  nodes)
        owner = owners[0] if owners else None
    timeout = args.timeout_ms or settings.probe_timeout_ms
    heard, iface, tag, window_ms, facts, notes, lost = _probe(address, family, bridge, vlan, settings, timeout)

    notes = list(notes)
    lease_list = []
    if settings.dhcp_leases:
        from phoenix_hook.cli.leases import load
        try:
            lease_list = lease_mod.active(load(settings), time.time())
        except CannotCheck as exc:
            notes.append(f"DHCP leases not read: {exc}")
    entries = fdb.read_fdb(iface) if heard else []
    if entries is None:
        notes.append(f"cannot read the forwarding database of {iface} (bridge -j fdb show br {iface}); "
                     f"ports are unknown")
    macs = mac_claims(guests)
    out = []
    for ip, _p, dev, mac in host:                  # Linux never answers our probe for its own address
        if ip == a and mac:
            out.append(locate.Answer(mac=mac, vendor=answer_words.vendor_words(mac, vendor.vendor),
                                     port=dev, where="host"))
            break
    for c in heard:
        port, where, vmid, nic = locate.place(c.mac, entries, tag, facts.macs)
        lease = locate.lease_for(c.mac, a, lease_list)
        claim = macs.get(c.mac)
        mac_owner = None
        if claim is not None and not (owner and owner.vmid == claim.vmid and owner.nic == claim.nic):
            mac_owner = f"{claim.owner} {claim.nic}"
        out.append(locate.Answer(mac=c.mac, vendor=answer_words.vendor_words(c.mac, vendor.vendor),
                                 port=port, where=where, vmid=vmid, nic=nic, lease=locate.lease_json(lease),
                                 kind=c.kind, mac_owner=mac_owner,
                                 expires_epoch=lease.expires if lease else None))
    out.sort(key=lambda x: (not locate.is_owners(owner, x, out), x.where != "host", x.mac))
    v = locate.verdict(owner, out)
    labels = {g.vmid: (f"{g.label} {g.name}" if g.name else g.label) for g in guests}
    if args.json:
        doc = locate.to_json(a, owner, out, v, also=[o.to_json() for o in owners[1:]], bridge=bridge,
                             iface=iface, vlan=vlan, window_ms=window_ms, probed_from=why, notes=notes)
        print(json.dumps(doc, indent=2))
    else:
        for line in locate.text_lines(a, owner, out, now=time.time(), guest_label=labels.get,
                                      iface=bridge, vlan=vlan, window_ms=window_ms):
            print(line)
        for o in owners[1:]:
            print(f"{a} is also configured on {o.label}" + (f" on node {o.node}" if o.type != "node" and o.node else ""))
        for n in notes:
            sys.stderr.write(f"phoenix-hook: note: {n}\n")
    code = locate.exit_code(v, lost)
    if code == 3:
        sys.stderr.write(f"phoenix-hook: could not check: {lost} frames were lost on {iface}, so "
                         f"'{v}' is not proven; run it again when the flood is gone\n")
    return code

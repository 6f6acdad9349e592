"""`phoenix-hook scan [CIDR]`: who answers ARP on a subnet, and whose guest each one is.

The schedule and the meaning of the answers are scan.py's (pure); this is
the edge: read the bridge and the host's addresses, drive scan.Sweep over
wire.Wire with the monotonic clock, print a table, CSV or JSON.

JSON (one object, keys stable):
  {"cidr", "bridge", "iface", "vlan", "source_ip",
   "rows": [{"ip", "mac", "vendor", "owner", "owner_vmid", "owner_by", "mac_owner", "flags": [..]}],
   "silent": [{"ip", "vmid", "nic", "owner", "node"}],
   "local": [{"ip", "iface", "mac"}],
   "sent", "elapsed_ms", "rate", "retries", "timeout_ms"}
Exit: 0 nothing wrong, 1 a DUP or MAC-MISMATCH, 2 bad usage, 3 could not scan.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import sys
import time

from .cli import CannotCheck, UsageError, load_settings
from . import scan, sources
from .owners import (DUP, MISMATCH, UNCLAIMED, Owners,
                     guest_claims, host_claims, mac_claims, node_claims)

# arp-scan(1) --retry-send / --retry-send-interval: a full transmit queue
# (ENOBUFS, EAGAIN) is waited out, 20 times 5 ms, before the send counts as failed.
SEND_TRIES, SEND_WAIT = 20, 0.005


def add_parser(sub):
    p = sub.add_parser("scan", help="ARP-sweep a subnet and name each answer's guest",
                       description="Send an ARP request to every address of a subnet from a bridge, "
                       "collect every answer, and name the guest configured for each address. "
                       "Flags: DUP (several MACs answer for one address), MAC-MISMATCH (the "
                       "address's guest is configured with another MAC), UNCLAIMED (nobody claims "
                       "it). Exit 0 nothing wrong, 1 DUP or MAC-MISMATCH, 2 bad usage, 3 could "
                       "not scan.")
    p.add_argument("cidr", nargs="?", metavar="CIDR",
                   help="subnet to sweep, e.g. 10.0.0.0/24 (default: the bridge's own subnet)")
    p.add_argument("--bridge", default="vmbr0", help="bridge to send from (default vmbr0)")
    p.add_argument("--vlan", type=int, metavar="N", help="sweep VLAN N (802.1Q tag, as a guest's tag=)")
    p.add_argument("--rate", type=int, default=scan.RATE, metavar="PPS",
                   help=f"requests per second, at most (default {scan.RATE})")
    p.add_argument("--retries", type=int, default=scan.RETRIES, metavar="N",
                   help=f"requests after the first to an address that has not answered "
                        f"(default {scan.RETRIES})")
    p.add_argument("--timeout-ms", type=int, default=scan.TIMEOUT_MS, metavar="MS",
                   help=f"wait before the first retry; each further wait is {scan.BACKOFF}x longer "
                        f"(default {scan.TIMEOUT_MS})")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object")
    out.add_argument("--csv", action="store_true", help="CSV rows; silent guest addresses "
                     "as rows with flag SILENT and no MAC")
    p.add_argument("--yes", action="store_true", help=f"allow a subnet wider than "
                   f"/{scan.WIDEST_WITHOUT_YES}")
    sources.add_argument(p)
    return p


def _check_options(args) -> None:
    if not 1 <= args.rate <= 100000:
        raise UsageError(f"--rate {args.rate} is out of range; use 1 to 100000 requests per second")
    if not 0 <= args.retries <= 10:
        raise UsageError(f"--retries {args.retries} is out of range; use 0 to 10")
    if not 10 <= args.timeout_ms <= 60000:
        raise UsageError(f"--timeout-ms {args.timeout_ms} is out of range; use 10 to 60000")
    if args.vlan is not None and not 1 <= args.vlan <= 4094:
        raise UsageError(f"--vlan {args.vlan} is not a VLAN ID; use 1 to 4094")


def _interface(bridge: str, vlan):
    """(link to send on, tag to put on frames) per REFERENCE section 4, as check.py does."""
    from . import hostnet
    br = hostnet.link(bridge)
    if br is None:
        raise CannotCheck(f"bridge {bridge} does not exist on this host; name one with --bridge")
    if not br.up:
        raise CannotCheck(f"{bridge} is down (ip link set {bridge} up)")
    if br.noarp:
        raise CannotCheck(f"{bridge} has ARP turned off (NOARP)")
    if vlan is not None:
        # VLAN N untagged on a device of its own, if there is one: PVE's vmbrXvN
        # on a non-VLAN-aware bridge, or the admin's vmbrX.N on a VLAN-aware one
        # (pve-common Network.pm); else tagged frames on the bridge itself.
        vdev = hostnet.link(f"{bridge}.{vlan}" if br.vlan_filtering else f"{bridge}v{vlan}")
        if vdev is not None and vdev.up and not vdev.noarp:
            return vdev, None
    return br, vlan


def _plan(args, link, tag, net):
    """(network, sender IP or None, host addresses [(ip, ifname, mac)]) for this sweep."""
    from . import hostnet, neigh
    addrs = neigh.read_addresses()
    if addrs is None:                    # no `ip`: local addresses without prefix or MAC
        local = [(ip, None, None) for ip in sorted(hostnet.local_ipv4())]
        mine = []
    else:
        local = [(a.ip, a.ifname, a.mac) for a in addrs if a.family == 4 and not a.ip.startswith("127.")]
        # Tagged frames on the bridge belong to VLAN `tag`, the bridge's own addresses do not.
        mine = [a for a in addrs if a.family == 4 and a.ifname == link.name and tag is None]
    if net is None:
        if not mine:
            where = f"{link.name} VLAN {tag}" if tag is not None else link.name
            raise UsageError(f"{where} has no IPv4 address to take the subnet from; name the subnet: "
                             f"phoenix-hook scan 10.0.0.0/24 --bridge {args.bridge}"
                             + (f" --vlan {tag}" if tag is not None else ""))
        net = mine[0].network
        _size(net, args)
    # Sender IP: the link's address in the subnet, else one whose subnet overlaps it
    # (10.0.0.1/24 for 10.0.0.128/25); else none, and RFC 5227 probes from 0.0.0.0.
    inside = [a for a in mine if ipaddress.IPv4Address(a.ip) in net]
    near = [a for a in mine if a.network.overlaps(net)]
    src = (inside or near or [None])[0]
    src = src.ip if src else None
    return net, src, local


def _size(net, args) -> None:
    try:
        scan.check_size(net, args.yes, args.rate)
    except scan.ScanUsage as exc:
        raise UsageError(str(exc)) from None


def cluster_claims(settings, requested_source, **guest_filter):
    """(guests, claims of guests and other nodes) from the chosen guest source."""
    from .pve import SourceError
    source, guests = sources.read_guests(settings, requested_source)
    try:
        nodes = sources.node_addresses(source)
    except SourceError as exc:
        raise CannotCheck(str(exc)) from None
    claims = guest_claims(guests, **guest_filter)
    claims += node_claims([(name, ip) for ip, name in nodes.items()], settings.node)
    return guests, claims


def _owners(settings, bridge, vlan, local, requested_source=None):
    guests, claims = cluster_claims(settings, requested_source, bridge=bridge, vlan=vlan)
    claims += host_claims(settings.node, [(ip, mac) for ip, _dev, mac in local])
    return claims, Owners(claims, mac_claims(guests)), bool(guests)


class _Progress:
    """One self-overwriting line on stderr, for long sweeps on a TTY only."""

    def __init__(self, total: int, label: str, on: bool):
        self.total, self.label, self.on, self.next = total, label, on, 0.0

    def __call__(self, sweep, now, final=False):
        if not self.on or (now < self.next and not final):
            return
        self.next = now + 0.2
        if final:
            sys.stderr.write("\r\033[K")
        else:
            sys.stderr.write(f"\r{self.label}: {sweep.sent} requests sent, "
                             f"{len(sweep.answers)}/{self.total} addresses answered\033[K")
        sys.stderr.flush()


def drive(sweep, wire, iface, frame_for, accept, progress=None, clock=time.monotonic) -> None:
    """Run the sweep to its end: send what is due, read every answer. The only timing loop."""
    from . import arp
    from .wire import WireError

    def listen(timeout):
        for _ifname, frame, vlan in wire.receive(timeout):
            pkt = arp.parse(frame, vlan)
            if pkt is not None and accept(pkt):
                sweep.answer(scan.ip_int(pkt.sender_ip), pkt.sender_mac, clock())

    now = clock()
    sweep.start(now)
    while not sweep.done(now):
        for n in sweep.due(now):
            for attempt in range(SEND_TRIES):
                try:
                    wire.send(iface, frame_for(n))
                    break
                except WireError as exc:
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN) or attempt == SEND_TRIES - 1:
                        raise
                    listen(SEND_WAIT)
        listen(max(0.0, sweep.wakeup(clock()) - clock()))
        now = clock()
        if progress:
            progress(sweep, now)
    if progress:
        progress(sweep, now, final=True)


def run(args) -> int:
    from . import arp, hostnet, vendor
    from .wire import Wire, WireError

    settings = load_settings(args)
    _check_options(args)
    net = None
    if args.cidr:                       # usage first: a bad CIDR is exit 2 whatever the bridge
        try:
            net = scan.parse_cidr(args.cidr)
        except scan.ScanUsage as exc:
            raise UsageError(str(exc)) from None
        _size(net, args)
    link, tag = _interface(args.bridge, args.vlan)
    net, src, local = _plan(args, link, tag, net)
    claims, owners, have_guests = _owners(settings, args.bridge, args.vlan, local, args.source)
    own_macs = hostnet.all_macs()
    host_ips = [ip for ip, _d, _m in local]
    in_net = [ip for ip in host_ips if ipaddress.IPv4Address(ip) in net]
    frame_for = scan.request_frames(link.mac, src, tag, probe_for=in_net)

    def accept(pkt):                    # on vmbrXvN VLAN N's answers arrive untagged (tag None)
        return scan.is_answer(pkt, link.mac, tag, own_macs)

    if not link.carrier:
        sys.stderr.write(f"phoenix-hook: note: no port of {link.name} is up, nobody can answer\n")
    sweep = scan.Sweep(scan.targets(net), rate=args.rate, retries=args.retries,
                       timeout=args.timeout_ms / 1000)
    label = f"scan {net} on {link.name}"
    progress = _Progress(net.num_addresses, label, sys.stderr.isatty() and net.num_addresses > 1024)
    t0 = time.monotonic()
    try:
        with Wire([link.name]) as wire:
            drive(sweep, wire, link.name, frame_for, accept, progress)
    except WireError as exc:
        raise CannotCheck(exc.strerror or str(exc)) from None
    elapsed_ms = round((time.monotonic() - t0) * 1000)

    rows = scan.build_rows(sweep.answers, owners, vendor.vendor)
    heard = {r.ip for r in rows}
    quiet = scan.silent(claims, net, heard)
    result = {"cidr": str(net), "bridge": args.bridge, "iface": link.name, "vlan": args.vlan,
              "source_ip": src or arp.ZERO_IP, "rows": [r.to_json() for r in rows],
              "silent": [s.to_json() for s in quiet],
              "local": [{"ip": ip, "iface": dev, "mac": mac} for ip, dev, mac in local if ip in in_net],
              "sent": sweep.sent, "elapsed_ms": elapsed_ms, "rate": args.rate, "retries": args.retries,
              "timeout_ms": args.timeout_ms}
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.csv:
        print(csv_text(rows, quiet), end="")
    else:
        if not have_guests:
            sys.stderr.write(f"phoenix-hook: note: no guest configs under {settings.pve_root}/nodes; "
                             f"owners are this host's addresses only\n")
        print(table(result, rows, quiet, color=sys.stdout.isatty()))
    return scan.exit_code(r.flags for r in rows)


# -- output ---------------------------------------------------------------------
_PAINT = {DUP: "31;1", MISMATCH: "31;1", UNCLAIMED: "33"}


def csv_text(rows, quiet) -> str:
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["ip", "mac", "vendor", "owner", "owner_vmid", "flags"])
    for r in rows:
        w.writerow([r.ip, r.mac, r.vendor or "", r.owner or "", r.owner_vmid or "", " ".join(r.flags)])
    for s in quiet:
        w.writerow([s.ip, "", "", s.owner, s.vmid or "", "SILENT"])
    return buf.getvalue()


def columns(rows, color=False, widths_from=None) -> list[str]:
    """Left-aligned columns; the last one is not padded. Colour paints the flag words."""
    widths = [max(len(r[i]) for r in (widths_from or rows)) for i in range(len(rows[0]) - 1)]
    lines = []
    for i, r in enumerate(rows):
        last = r[-1]
        if color and i:
            last = " ".join(f"\033[{_PAINT[f]}m{f}\033[0m" if f in _PAINT else f for f in last.split(" "))
        lines.append("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [last]).rstrip())
    return lines


def _flag_words(r) -> str:
    words = list(r.flags)
    if r.mac_owner:
        words.append(f"(MAC of {r.mac_owner})")
    return " ".join(words)


def table(result, rows, quiet, color=False) -> str:
    vlan = f" VLAN {result['vlan']}" if result["vlan"] is not None else ""
    n_ips = len({r.ip for r in rows})
    head = (f"{result['cidr']} on {result['bridge']}{vlan}: {len(rows)} answers from {n_ips} addresses, "
            f"{len(quiet)} silent guest addresses ({result['sent']} requests from "
            f"{result['source_ip']} in {result['elapsed_ms'] / 1000:.2f} s)")
    out = [head]
    if rows:
        cells = [("IP", "MAC", "VENDOR", "OWNER", "FLAGS")]
        cells += [(r.ip, r.mac, (r.vendor or "-")[:32], r.owner or "-", _flag_words(r)) for r in rows]
        out += [""] + columns(cells, color)
    if quiet:
        out += ["", "Configured but silent (stopped, or not reachable here):"]
        out += ["  " + x for x in columns([("IP", "GUEST", "NIC")] +
                                          [(s.ip, s.owner, s.nic or "-") for s in quiet])]
    if result["local"]:
        out += ["", "This host holds " + ", ".join(f"{x['ip']} ({x['iface']})" for x in result["local"])
                + ": probed from 0.0.0.0, any answer is someone else's"]
    problems = [r for r in rows if DUP in r.flags or MISMATCH in r.flags]
    if problems:
        seen = dict.fromkeys(f"{r.ip} " + " ".join(f for f in r.flags if f != UNCLAIMED)
                             for r in problems)      # rows are in address order already
        out += ["", "Conflicts: " + "; ".join(seen)]
    return "\n".join(out)

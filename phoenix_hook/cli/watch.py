"""`phoenix-hook watch`: keep watching the guests' static addresses after they started.

Runs in the foreground (systemd Type=notify: systemd/phoenix-hook-watch.service).
`--list` prints what would be watched, and where, and exits.
"""
from __future__ import annotations

import sys

from phoenix_hook.cli.main import CannotCheck, UsageError, load_settings, need_raw_sockets


def add_parser(sub):
    p = sub.add_parser("watch", help="watch the guests' addresses for conflicts, ongoing",
                       description="Listen on this node's bridges for devices that take a guest's static "
                       "IPv4 or IPv6 address (RFC 5227 2.4 ongoing detection) and alert through the journal, "
                       "a JSON log, PVE notifications, a webhook and a Prometheus metrics file ([watch] "
                       "settings). Runs until SIGTERM; SIGHUP re-reads settings and configs. Exit 0 after "
                       "SIGTERM or SIGINT (or --list done), 2 bad usage or settings (also notify = pve where "
                       "PVE::Notify does not load), 3 cannot listen (no raw sockets: run as root).")
    p.add_argument("--list", action="store_true",
                   help="print the watched addresses and where each is heard, then exit")
    return p


def run(args) -> int:
    settings = load_settings(args)
    if args.list:
        return list_watched(settings)
    need_raw_sockets(args, "the watch listens on raw sockets and re-probes conflicts")
    from phoenix_hook.net.wire import WireError
    from phoenix_hook.watch.monitor import Monitor, StartError
    try:
        monitor = Monitor(settings, reload_settings=lambda: _reload(args))
        return monitor.run()
    except StartError as exc:
        if exc.code == 2:
            raise UsageError(str(exc)) from None
        raise CannotCheck(str(exc)) from None
    except WireError as exc:
        raise CannotCheck(f"{exc.strerror or exc}") from None


def _reload(args):
    from phoenix_hook.settings import load
    return load(getattr(args, "config", None))


def list_watched(settings) -> int:
    from phoenix_hook.errors import SourceError
    from phoenix_hook.net import hostnet
    from phoenix_hook.watch import targets
    from phoenix_hook.watch.configs import ConfigTree
    try:
        guests = ConfigTree(settings.pve_root).read()
    except SourceError as exc:
        raise CannotCheck(str(exc)) from None
    ignored = settings.ignored if settings.ignore else (lambda ip: False)
    wset = targets.build(guests, ignored=ignored)
    links = {n: hostnet.link(n) for n in targets.interfaces_to_read(wset.segments)}
    vlans = {n: hostnet.bridge_self_vlans(n) for n, link in links.items() if link and link.vlan_filtering}
    listen = targets.listen_plan(wset.segments, links, vlans)
    heard: dict = {}
    for (iface, vlan), segs in listen.rx.items():
        for seg in segs:
            heard.setdefault(seg, []).append(iface + (f" tagged {vlan}" if vlan is not None else ""))
    out = sys.stdout
    out.write(f"{len(wset.addresses)} addresses of {wset.guests} guests\n")
    for w in wset.addresses:
        where = ", ".join(sorted(heard.get(w.segment, []))) or \
            f"not heard: {w.bridge} does not exist on this host"
        out.write(f"  {w.describe()}  guest MAC {w.guest_mac}  node {w.node}  heard on {where}\n")
    for note in wset.notes + listen.notes:
        out.write(f"note: {note}\n")
    return 0

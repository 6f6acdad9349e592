"""The watch's loop: listen, judge, alert, re-check, reload. The edge that holds it together.

One thread captures (wire.WatchWire, a kernel BPF filter built from the
watched addresses, so unrelated frames never wake it); the PVE
notification and the webhook run in their own threads behind bounded
queues (channels.py), so neither a slow perl nor a hanging web server ever
holds up the capture. Every second the loop checks the bridges (down, up,
deleted, created again, appearing late) and the kernel's drop counter;
every reload_s (and on SIGHUP) it re-reads the guest configs that changed.
SIGTERM or SIGINT ends it with exit 0 within a second.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import time

from phoenix_hook.errors import SourceError
from phoenix_hook.net import arp, bpf, hostnet, ndp
from phoenix_hook.net.wire import WatchWire, WireError, sd_notify
from phoenix_hook.watch import channels, events, rules, targets
from phoenix_hook.watch.configs import ConfigTree
from phoenix_hook.watch.limits import CAPPED, REPEAT, SEND, AlertLimiter, Conflicts

TICK_S = 1.0                 # interfaces, drops, watchdog, metrics
RUNNING_SEEN_S = 600.0       # another node's guest heard from its own MAC this recently: up


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


class StartError(Exception):
    """The watch cannot start: (exit code, one line for the admin)."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code


class Monitor:
    def __init__(self, settings, *, reload_settings=None, out=None, environ=None,
                 clock=time.monotonic, wall=time.time):
        self.settings = settings
        self.reload_settings = reload_settings      # callable() -> Settings (SIGHUP), or None
        self.environ = os.environ if environ is None else environ
        self.clock, self.wall = clock, wall
        self.journal = channels.Journal(out or sys.stdout)
        self.once = channels.Once(self.say, clock)
        self.tree = ConfigTree(settings.pve_root)
        self.wset = targets.WatchSet()
        self.listen = targets.Listen()
        self.links: dict = {}
        self.self_vlans: dict = {}
        self.host_macs: frozenset = frozenset()
        self.wire = WatchWire()
        self.stopping = False
        self.reload_asked = False
        self.frames = {"ipv4": 0, "ipv6": 0}
        self.dropped = 0
        self.suppressed_total = 0
        self.totals: dict = {}                      # (guest id, address) -> conflicts seen
        self.own_seen: dict = {}                    # (vmid, address) -> when its own MAC last spoke
        self.last_reload_wall = 0.0
        self.tree_broken = False
        self.said: set = set()                      # notes said once
        self.down: set = set()                      # interfaces that reported ENETDOWN
        self.filter_key = None
        self.metrics_dirty = True
        self.status = ""
        self.notify = self.webhook = None
        self.started = False
        self.watchdog_s = None
        self._index: dict = {}                      # interface -> ifindex at the last full look
        self.ports: dict = {}                       # (bridge, VLAN) -> probeport.ProbePort while re-probing
        self._apply_watch_settings(settings)

    # -- saying things ---------------------------------------------------------------
    def say(self, text: str, priority: int = events.INFO) -> None:
        self.journal.line(text, priority)

    def say_once(self, key, text: str, priority: int = events.WARNING) -> None:
        if key not in self.said:
            self.said.add(key)
            self.say(text, priority)

    # -- settings and channels -------------------------------------------------------------
    def _apply_watch_settings(self, settings) -> None:
        ws = settings.watch
        old_ws = getattr(self, "ws", None)
        self.ws = ws
        if old_ws is None or (old_ws.alert_interval_s, old_ws.max_alerts_per_minute) != \
                (ws.alert_interval_s, ws.max_alerts_per_minute):
            self.limiter = AlertLimiter(ws.alert_interval_s, ws.max_alerts_per_minute)
        # else: keep what was said already, so a reload does not repeat every open conflict
        old = getattr(self, "conflicts", None)
        self.conflicts = Conflicts(verify_s=ws.verify_s)
        if old is not None:
            self.conflicts.open, self.conflicts._per_address = old.open, old._per_address
        self.log = channels.JsonLog(ws.log_file, self.once)

    def start_channels(self) -> None:
        """PVE notifications and the webhook, per [watch]; StartError when notify = pve cannot work."""
        ws = self.ws
        for worker in (self.notify, self.webhook):
            if worker is not None:
                worker.stop(0.2)
        self.notify = self.webhook = None
        if ws.notify != "off":
            why = channels.notify_loads(environ=self.environ)
            if why is None:
                self.notify = channels.PveNotify(self.once, environ=self.environ)
            elif ws.notify == "pve":
                raise StartError(2, f"[watch] notify = pve, but {why}; install libpve-notify-perl "
                                    f"(PVE 8.1 or later) or set notify = auto")
            else:
                self.say(f"PVE notifications off: {why} (notify = auto)", events.INFO)
        if ws.webhook_url:
            self.webhook = channels.Webhook(self.once, ws.webhook_url, timeout=ws.webhook_timeout_s)

    # -- the run -----------------------------------------------------------------------
    def run(self) -> int:
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        # A signal writes a byte here, so a long wait for frames ends at once (the loop
        # sleeps until its next job instead of polling for signals).
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            self.start_channels()
            self.reload()
            self.sync_interfaces()
            self._ready()
            self._loop()
            return 0
        finally:
            self._shutdown()
            signal.set_wakeup_fd(old_wakeup)
            os.close(self._wake_r)
            os.close(wake_w)
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _stop(self, *_):
        self.stopping = True

    def _hup(self, *_):
        self.reload_asked = True

    def _ready(self) -> None:
        """READY=1 once listening on every bridge that exists (pve-guests.service waits for it)."""
        listening = ", ".join(self.wire.names()) or "no bridge yet"
        self.say(f"watching {plural(len(self.wset.addresses), 'address')} of "
                 f"{plural(self.wset.guests, 'guest')} ({listening}); alerts: journal, {self.ws.log_file}"
                 + (", PVE notifications" if self.notify else "")
                 + (", webhook" if self.webhook else "")
                 + (f", metrics {self.ws.metrics_file}" if self.ws.metrics_file else ""))
        sd_notify("READY=1\n" + self._status_line(), self.environ)
        usec = self.environ.get("WATCHDOG_USEC", "")
        pid = self.environ.get("WATCHDOG_PID", "")
        self.watchdog_s = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 2e6          # sd_watchdog_enabled(3): ping at half the interval
        self.next_ping = self.clock()
        self.started = True

    def _status_line(self) -> str:
        n_open = len(self.conflicts.open)
        self.status = (f"STATUS=watching {plural(len(self.wset.addresses), 'address')} of "
                       f"{plural(self.wset.guests, 'guest')} "
                       f"on {', '.join(self.wire.names()) or 'no bridge yet'}"
                       + (f"; {n_open} open conflict{'s' if n_open != 1 else ''}" if n_open else ""))
        return self.status

    def _loop(self) -> None:
        next_tick = self.clock() + TICK_S
        next_reload = self.clock() + self.ws.reload_s
        while not self.stopping:
            now = self.clock()
            wake = min(next_tick, next_reload, self.conflicts.wakeup() or next_tick)
            got, failed = self.wire.receive_each(max(0.0, wake - now), wake_fd=self._wake_r)
            try:
                os.read(self._wake_r, 512)          # a signal woke us: its handler has run
            except BlockingIOError:
                pass
            for iface, frame, vlan in got:
                self.on_frame(iface, frame, vlan)
            for iface, err in failed.items():
                self.on_failure(iface, err)
            now = self.clock()
            self.verify(now)
            if self.reload_asked or now >= next_reload:
                self.reload()
                next_reload = self.clock() + self.ws.reload_s
            if now >= next_tick:
                self.tick(now)
                next_tick = now + TICK_S

    def tick(self, now: float) -> None:
        # Cheap every second: one /sys read per interface. The full picture (links, VLANs,
        # the listen plan) only when an interface came, went or was down.
        index = {n: hostnet.ifindex(n) for n in targets.interfaces_to_read(self.wset.segments)}
        if index != self._index or self.down:
            self.refresh_links()
            self._index = index
        self.sync_interfaces()
        drops = self.wire.take_drops()
        if drops:
            self.dropped += sum(drops.values())
            self.metrics_dirty = True
            self.once("drops", "the kernel dropped " + ", ".join(f"{n} frames on {i}" for i, n in drops.items())
                      + " before the watch read them (it fell behind); conflicts in them may be missed",
                      events.WARNING)
        held = self.limiter.summary(now)
        if held:
            self._suppressed(held)
        status = self._status_line()
        if self.watchdog_s is not None and now >= self.next_ping:
            sd_notify("WATCHDOG=1\n" + status, self.environ)
            self.next_ping = now + self.watchdog_s
        self.write_metrics()

    def _suppressed(self, n: int) -> None:
        self.suppressed_total += n
        self.metrics_dirty = True
        r = events.suppressed(n, self.ws.max_alerts_per_minute, self.settings.node, self.wall())
        self.say(f"suppressed: {r['message']}", events.WARNING)
        self.log.write(r)

    def _shutdown(self) -> None:
        held = self.limiter.flush()
        if held:
            self._suppressed(held)
        self.write_metrics(force=True)
        for worker in (self.notify, self.webhook):
            if worker is not None:
                worker.stop(0.3)
        self.close_ports(keep=())
        self.wire.close()
        self.say("stopped", events.INFO)

    # -- frames ------------------------------------------------------------------------
    def on_frame(self, iface: str, frame: bytes, vlan) -> None:
        seen = rules.read(frame, vlan)
        if seen is None:
            return
        self.frames["ipv4" if seen[0] == 4 else "ipv6"] += 1
        self.metrics_dirty = True
        now = self.clock()
        for s in rules.match(seen, iface, self.listen, self.wset, self.host_macs, self.ws.ignore_macs):
            self.on_sighting(s, now)

    def on_sighting(self, s: rules.Sighting, now: float) -> None:
        w = s.watched
        if s.kind == rules.OWN:
            if len(self.own_seen) < 4 * len(self.wset.addresses) + 64:
                self.own_seen[(w.vmid, w.ip)] = now
            return
        o = self.conflicts.seen(s.key, w, now) if s.kind == rules.CONFLICT else None
        decision = self.limiter.check(s.key, s.kind, now)
        if decision == REPEAT:
            return
        if s.kind == rules.CONFLICT:
            self.totals[(w.id, w.ip)] = self.totals.get((w.id, w.ip), 0) + 1
            self.metrics_dirty = True
        if decision == SEND:
            self.emit(s.kind, w, s.mac, s.how)
            if o is not None:
                o.alerted = True
        elif decision == CAPPED:
            pass                           # counted; the summary line says how many

    def running(self, w: targets.Watched) -> bool:
        if w.node == self.settings.node:
            from phoenix_hook.pve.files import guest_running
            return guest_running(w.vmid, w.type)
        seen = self.own_seen.get((w.vmid, w.ip))
        return seen is not None and self.clock() - seen < RUNNING_SEEN_S

    def emit(self, event: str, w: targets.Watched, mac: str, how: str | None, since: float | None = None) -> None:
        from phoenix_hook.net import vendor
        r = events.record(event, w, mac, how=how, vendor=vendor.vendor(mac),
                          mac_owner=self.wset.mac_owners.get(mac), running=self.running(w),
                          watch_node=self.settings.node, wall=self.wall(), since=since)
        self.journal.line(events.journal(r))
        self.log.write(r)
        if self.notify is not None:
            if w.node == self.settings.node:
                self.notify.submit(events.notification(r))
            # another node's guest: its own node's watch notifies
        if self.webhook is not None:
            self.webhook.submit(r)

    def on_failure(self, iface: str, err: WireError) -> None:
        if err.errno == errno.ENETDOWN:
            if iface not in self.down:
                self.down.add(iface)
                self.say(f"{iface} went down; listening again once it is up", events.WARNING)
        else:
            self.once(f"rx-{iface}", f"{err}; reopening {iface}", events.WARNING)
            self.wire.remove(iface)

    # -- re-checking open conflicts ----------------------------------------------------
    def verify(self, now: float) -> None:
        def sendable(o):
            if o.segment in self.listen.ports:
                return self.port_for(o.segment) is not None
            path = self.listen.send.get(o.segment)
            return path is not None and path[0] in self.wire.names()
        for o in self.conflicts.due(now, sendable):
            if o.segment in self.listen.ports:
                port = self.ports.get(self.listen.ports[o.segment])
                if port is None:
                    continue
                iface, tag, src = port.peer, None, port.mac      # untagged: the port is in the VLAN
            else:
                iface, tag = self.listen.send[o.segment]
                link = self.links.get(iface)
                if link is None:
                    continue
                src = link.mac
            frame = probe_frame(o.family, o.ip, o.mac, src, tag)
            try:
                self.wire.send(iface, frame)
            except WireError as exc:
                self.once(f"tx-{iface}", f"cannot re-check conflicts on {iface}: {exc.strerror or exc}",
                          events.WARNING)
        gone = self.conflicts.resolved(now)
        # A port stays only while a round of re-probes in its VLAN is under way; it is
        # deleted before anything is said, so nothing outlives the round it served.
        busy = {self.listen.ports.get(o.segment) for o in self.conflicts.open.values()
                if o.round_start is not None}
        self.close_ports(keep=busy)
        for o in gone:
            self.limiter.forget(o.key)
            self.metrics_dirty = True
            if o.alerted and self.limiter.count_one(now):
                for w in o.watched:
                    self.emit("resolved", w, o.mac, None, since=self.wall() - (now - o.first_seen))

    # -- the temporary ports for VLANs the bridge itself is not in ----------------------
    def port_for(self, segment):
        """The open temporary port into segment's VLAN, opened now if need be; None (said once)
        when it cannot be made. Its host end is listened on, its MACs are this host's."""
        from phoenix_hook.net import probeport
        key = self.listen.ports[segment]
        port = self.ports.get(key)
        if port is not None and port.broken() is None and port.peer in self.wire.names():
            return port
        if port is not None:
            self._close_port(key)
        bridge, vlan = key
        try:
            port = probeport.open_port(bridge, vlan)
        except probeport.PortError as exc:
            self.once(f"port-{bridge}-{vlan}", f"conflicts in VLAN {vlan} on {bridge} are reported but not "
                      f"re-checked: {exc}", events.WARNING)
            return None
        try:
            self.wire.add(port.peer)
        except WireError as exc:
            port.close()
            self.once(f"port-{bridge}-{vlan}", f"conflicts in VLAN {vlan} on {bridge} are reported but not "
                      f"re-checked: cannot listen on {port.peer}: {exc.strerror or exc}", events.WARNING)
            return None
        self.ports[key] = port
        self.host_macs = self.host_macs | {port.mac} | set(hostnet.all_macs())
        self._route_port(key, port)
        return port

    def _route_port(self, key, port) -> None:
        # Answers to the port's probes come back to its host end, untagged.
        segs = tuple(s for s, k in self.listen.ports.items() if k == key)
        if segs:
            self.listen.rx[(port.peer, None)] = segs

    def _close_port(self, key) -> None:
        port = self.ports.pop(key)
        self.wire.remove(port.peer)
        self.listen.rx.pop((port.peer, None), None)
        port.close()

    def close_ports(self, keep) -> None:
        for key in [k for k in self.ports if k not in keep]:
            self._close_port(key)

    # -- configs, host facts, interfaces -----------------------------------------------
    def reload(self) -> None:
        if self.reload_asked and self.reload_settings is not None:
            self.reload_asked = False
            self._new_settings()
        self.reload_asked = False
        try:
            guests = self.tree.read()
        except SourceError as exc:
            if not self.tree_broken:
                self.tree_broken = True
                self.say(f"cannot read the guest configs ({exc}); keeping the last good set of "
                         f"{len(self.wset.addresses)} addresses until they can be read again", events.WARNING)
            return
        if self.tree_broken:
            self.tree_broken = False
            self.say("the guest configs can be read again", events.NOTICE)
        for path in self.tree.unreadable:
            self.once(f"unreadable-{path}", f"cannot read {path}; keeping what it said before", events.WARNING)
        ignored = self.settings.ignored if self.settings.ignore else (lambda ip: False)
        old = {(w.id, w.nic, w.ip) for w in self.wset.addresses}
        self.wset = targets.build(guests, ignored=ignored)
        new = {(w.id, w.nic, w.ip) for w in self.wset.addresses}
        if old and old != new:
            self.say(f"now watching {plural(len(new), 'address')} of {plural(self.wset.guests, 'guest')} "
                     f"({len(new - old)} new, {len(old - new)} gone)", events.INFO)
        for note in self.wset.notes:
            self.say_once(("note", note), note, events.NOTICE)
        self.host_macs = hostnet.all_macs()
        self.refresh_links(vlans=True)
        self.conflicts.drop_unwatched(lambda o: bool(self.wset.lookup(*o.key[:4])))
        self.last_reload_wall = self.wall()
        self.metrics_dirty = True
        self._filter()

    def _new_settings(self) -> None:
        from phoenix_hook.errors import SettingsError
        try:
            s = self.reload_settings()
        except SettingsError as exc:
            self.say(f"SIGHUP: the settings were not reloaded: {exc}", events.WARNING)
            return
        changed_channels = (s.watch.notify, s.watch.webhook_url, s.watch.webhook_timeout_s) != \
            (self.ws.notify, self.ws.webhook_url, self.ws.webhook_timeout_s)
        if s.pve_root != self.settings.pve_root:
            self.tree = ConfigTree(s.pve_root)
        self.settings = s
        self._apply_watch_settings(s)
        if changed_channels:
            try:
                self.start_channels()
            except StartError as exc:
                self.say(f"SIGHUP: {exc}; PVE notifications stay off", events.WARNING)
        self.say("settings reloaded (SIGHUP)", events.INFO)

    def refresh_links(self, vlans: bool = False) -> None:
        names = targets.interfaces_to_read(self.wset.segments)
        links = {n: hostnet.link(n) for n in names}
        if vlans:
            self.self_vlans = {n: hostnet.bridge_self_vlans(n) for n, link in links.items()
                               if link is not None and link.vlan_filtering}
        for name in list(self.down):
            link = links.get(name)
            if link is not None and link.up:
                self.down.discard(name)
                self.say(f"{name} is up again", events.NOTICE)
        self.links = links
        listen = targets.listen_plan(self.wset.segments, links, self.self_vlans, hostnet.vlan_devices())
        for note in listen.notes:
            self.say_once(("note", note), note, events.NOTICE)
        for bridge in listen.missing:
            if bridge in self.wire.names():
                self.said.add(("missing", bridge))         # it was just deleted: sync_interfaces says so
                continue
            n = sum(1 for w in self.wset.addresses if w.bridge == bridge)
            self.say_once(("missing", bridge), f"bridge {bridge} does not exist on this host (yet): "
                          f"{plural(n, 'address')} on it will be watched once it appears", events.NOTICE)
        for bridge in self.listen.missing:
            if bridge not in listen.missing:
                self.said.discard(("missing", bridge))
        self.listen = listen
        for key, port in list(self.ports.items()):
            if key in listen.ports.values():
                self._route_port(key, port)
            else:
                self._close_port(key)

    def sync_interfaces(self) -> None:
        want = set(self.listen.ifaces) | {p.peer for p in self.ports.values()}
        for name in self.wire.names():
            index = hostnet.ifindex(name)
            if name not in want:
                self.wire.remove(name)
                if index is None:
                    self.down.discard(name)
                    self.say(f"{name} was deleted; listening again once it is back", events.WARNING)
            elif index != self.wire.ifindex.get(name):
                self.wire.remove(name)
                self.down.discard(name)
                self.say(f"{name} was deleted" + (" and created again" if index else "")
                         + ("; listening on the new one" if index else "; listening again once it is back"),
                         events.WARNING)
        for name in sorted(want - set(self.wire.names())):
            if hostnet.ifindex(name) is None:
                continue
            try:
                self.wire.add(name)
            except WireError as exc:
                if exc.errno in (errno.EPERM, errno.EACCES):
                    raise StartError(3, f"cannot listen on {name}: {exc.strerror} (the watch needs root: "
                                        f"CAP_NET_RAW)") from None
                self.once(f"open-{name}", f"cannot listen on {name}: {exc.strerror or exc}", events.WARNING)
                continue
            if ("listened", name) in self.said:
                self.say(f"listening on {name} again", events.NOTICE)
            elif self.started:
                self.say(f"listening on {name} now (it appeared)", events.NOTICE)
            self.said.add(("listened", name))

    def _filter(self) -> None:
        v4, v6 = self.wset.ips(4), self.wset.ips(6)
        key = (v4, v6)
        if key == self.filter_key:
            return
        prog = bpf.watch_program(v4, v6)
        if prog is None:
            self.say_once("bigfilter", f"{len(v4) + len(v6)} addresses are more than the kernel filter holds; "
                          f"all ARP and ND frames reach the watch (it judges them all the same)", events.NOTICE)
        self.wire.filter(bpf.assemble(prog) if prog is not None else None)
        self.filter_key = key

    # -- metrics -----------------------------------------------------------------------
    def write_metrics(self, force: bool = False) -> None:
        path = self.ws.metrics_file
        if not path or not (self.metrics_dirty or force):
            return
        rows = sorted(self.wset.by_id_ip())
        text = channels.render_metrics(rows, self.conflicts.active(), self.totals,
                                       watched=len(self.wset.addresses), frames=self.frames,
                                       dropped=self.dropped, suppressed=self.suppressed_total,
                                       last_reload=self.last_reload_wall)
        try:
            channels.write_atomically(path, text)
            self.metrics_dirty = False
        except OSError as exc:
            self.once("metrics", f"cannot write the metrics file {path}: {exc.strerror}", events.WARNING)


def probe_frame(family: int, ip: str, mac: str, src_mac: str, vlan) -> bytes:
    """A probe for ip sent to the conflicting MAC alone (RFC 5227 2.1.1 shape; IPv6: a DAD
    NS, RFC 4862 5.4.2): a device that still holds the address answers it."""
    if family == 6:
        return ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=src_mac, eth_dst=mac, ip_src=ndp.UNSPECIFIED,
                         ip_dst=ndp.solicited_node(ip), target=ip, vlan=vlan)
    return arp.build(arp.ARP_REQUEST, eth_src=src_mac, eth_dst=mac, sender_mac=src_mac,
                     sender_ip=arp.ZERO_IP, target_mac=arp.ZERO_MAC, target_ip=ip, vlan=vlan)

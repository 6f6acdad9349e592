"""Lab tests of `phoenix-hook watch`: the real command in the lab's PVE namespace, real kernels
and scripted senders on the LAN side, every channel read back.

The watch runs as systemd would run it (stdout for the journal, a test
NOTIFY_SOCKET for READY=1 and the watchdog), against a config tree the test
writes. Frames come from kernel hosts in lab namespaces and from
tests/sender.py (spoofed MACs, tagged frames, floods). Where a test proves
that something did NOT happen, it sends a marker frame after it that does
make an event: frames are judged in the order they arrive on the one
socket, so once the marker's event is there, everything sent before it was
judged. Nothing leaves the lab's namespaces; the lab removes them.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from phoenix_hook.net import arp, ndp

SENDER = Path(__file__).resolve().parent / "sender.py"
RECEIVER = Path(__file__).resolve().parent / "webhook_receiver.py"
PERL_LIB = Path(__file__).resolve().parent / "perl"
SQUAT = "16:0d:a0:c0:b9:1b"
SQUAT2 = "16:0d:a0:c0:b9:2c"
INTEL = "00:1b:21:3a:4b:5c"
MARK_IP = "10.0.0.99"            # fixture guest 910 (Portainer): the marker address
MARK_MAC = "16:0d:a0:00:00:99"
EVENT_KEYS = ("event", "time", "node", "vmid", "type", "name", "nic", "family", "ip", "guest_mac", "mac",
              "vendor", "bridge", "vlan", "guest_running")


def wait_until(pred, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


class Watch:
    """`phoenix-hook watch` in the lab's PVE namespace, its output and its files."""

    def __init__(self, lab, pve, tmp: Path, watch: dict | None = None, env_extra=None, settings=None):
        self.lab, self.pve, self.tmp = lab, pve, tmp
        self.log = tmp / "watch.jsonl"
        self.metrics_file = tmp / "metrics" / "phoenix-hook.prom"
        self.metrics_file.parent.mkdir(exist_ok=True)
        values = {"log_file": self.log, "metrics_file": self.metrics_file, "notify": "off", "verify_s": 60}
        values.update(watch or {})
        pve.settings(extra_sections="[watch]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()),
                     **(settings or {}))
        self.sockdir = tempfile.mkdtemp(prefix="phxw")       # short: unix socket paths max 108 bytes
        self.notify_path = os.path.join(self.sockdir, "notify")
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_sock.bind(self.notify_path)
        self.notify_sock.settimeout(0.2)
        self.notes: list[str] = []
        self.lines: list[str] = []
        env = pve.env(dict({"NOTIFY_SOCKET": self.notify_path}, **(env_extra or {})))
        lab.wait_link_ready()
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.pve, sys.executable, "-m", "phoenix_hook",
                                      "watch"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd="/")
        lab.procs.append(self.proc)
        self._stop = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._notes, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _notes(self):
        while not self._stop:
            try:
                self.notes.append(self.notify_sock.recv(4096).decode())
            except (socket.timeout, OSError):
                continue

    def ready(self, timeout=15.0):
        wait_until(lambda: any(n.startswith("READY=1") for n in self.notes) or self.proc.poll() is not None,
                   timeout, "READY=1")
        assert self.proc.poll() is None, "\n".join(self.lines)
        return self

    def line(self, pred, timeout=10.0) -> str:
        return wait_until(lambda: next((x for x in self.lines if pred(x)), None), timeout,
                          f"a matching journal line (have: {self.lines[-8:]})")

    def events(self, kind=None, **match) -> list[dict]:
        if not self.log.exists():
            return []
        out = [json.loads(x) for x in self.log.read_text().splitlines()]
        return [e for e in out if (kind is None or e["event"] == kind)
                and all(e.get(k) == v for k, v in match.items())]

    def event(self, kind, timeout=10.0, **match) -> dict:
        return wait_until(lambda: (self.events(kind, **match) or [None])[0], timeout,
                          f"a {kind} event {match} (journal: {self.lines[-8:]})")

    def metrics(self) -> dict[str, float]:
        if not self.metrics_file.exists():
            return {}
        out = {}
        for line in self.metrics_file.read_text().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def metric(self, name, pred, timeout=10.0):
        return wait_until(lambda: name in self.metrics() and pred(self.metrics()[name]), timeout,
                          f"{name} (have {self.metrics().get(name)})")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))

    def stop(self, sig=signal.SIGTERM, timeout=5.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._stop = True
        time.sleep(0.05)
        return code

    def close(self):
        self._stop = True
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.notify_sock.close()
        try:
            os.unlink(self.notify_path)
            os.rmdir(self.sockdir)
        except OSError:
            pass


@pytest.fixture
def watch(lab, pve, tmp_path):
    started = []

    def start(**kw) -> Watch:
        w = Watch(lab, pve, tmp_path, **kw)
        started.append(w)
        return w.ready()
    yield start
    for w in started:
        w.close()


def send(lab, ns, *frames, iface="eth0"):
    p = lab.run(ns, [sys.executable, str(SENDER), "--iface", iface, *sum((["--hex", f.hex()] for f in frames), [])],
                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr


def marker(lab, ns, w: Watch, mac=MARK_MAC):
    """A conflict on the marker guest's address; returns when the watch has logged it."""
    send(lab, ns, arp.build_announcement(mac, MARK_IP))
    w.event("conflict", ip=MARK_IP, mac=mac)


def guests(pve, *vmids):
    for vmid in vmids:
        pve.guest(vmid)


# -- events -------------------------------------------------------------------------------------
def test_ipv4_conflict_stays_open_while_answered_then_resolves(lab, pve, watch):
    guests(pve, 951, 952)
    rogue = lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT)
    w = watch(watch={"verify_s": 1})
    send(lab, rogue, arp.build_announcement(SQUAT, "10.0.0.151"))
    e = w.event("conflict", ip="10.0.0.151")
    for key in EVENT_KEYS:
        assert key in e, key
    assert (e["vmid"], e["type"], e["nic"], e["family"], e["mac"], e["guest_mac"], e["bridge"], e["vlan"],
            e["node"], e["guest_running"], e["how"]) == \
        (951, "lxc", "net0", 4, SQUAT, "52:54:00:67:89:b1", "vmbr0", None, "pve1", False, "announcement")
    assert e["name"] == pve.spec(951)["name"]
    line = w.line(lambda x: x.startswith("<3>conflict: CT 951"))
    assert line == (f"<3>conflict: CT 951 ({e['name']}) net0 10.0.0.151 on vmbr0 is in use by {SQUAT} (vendor "
                    f"unknown, locally administered), which announced it (gratuitous ARP); CT 951 is stopped")
    act = 'phoenix_hook_conflict_active{id="lxc/951",ip="10.0.0.151"}'
    w.metric(act, lambda v: v == 1)
    # The rogue's kernel answers each re-probe (ARP replies reach Python: frames_total grows) and
    # the conflict stays open ...
    w.metric('phoenix_hook_frames_total{family="ipv4"}', lambda v: v >= 4, timeout=15)
    assert w.events("resolved") == [] and w.metrics()[act] == 1
    # ... until it gives the address up.
    lab.ip(rogue, "addr", "del", "10.0.0.151/24", "dev", "eth0")
    r = w.event("resolved", ip="10.0.0.151", timeout=15)
    assert r["mac"] == SQUAT and r["since"] == e["time"]
    assert w.line(lambda x: x.startswith("<5>resolved: CT 951"))
    w.metric(act, lambda v: v == 0)
    m = w.metrics()
    assert m['phoenix_hook_conflicts_total{id="lxc/951",ip="10.0.0.151"}'] == 1
    assert m['phoenix_hook_conflicts_total{id="lxc/952",ip="10.0.0.152"}'] == 0
    assert m["phoenix_hook_watched_addresses"] == 2
    assert m["phoenix_hook_last_reload_timestamp_seconds"] > time.time() - 60
    assert len(w.events("conflict")) == 1                     # repeats within alert_interval_s: once
    assert w.stop() == 0


def test_ipv4_claim_and_the_vendor(lab, pve, watch):
    guests(pve, 951, 910)
    ns = lab.add_host("claimer", mac=INTEL)
    w = watch()
    send(lab, ns, arp.build_probe(INTEL, "10.0.0.151"))
    e = w.event("claim", ip="10.0.0.151")
    assert (e["mac"], e["vendor"], e["how"]) == (INTEL, "Intel Corporate", "probe")
    assert w.line(lambda x: x.startswith("<4>claim: CT 951")).endswith(
        "which is probing for it (ARP probe, RFC 5227); CT 951 is stopped")
    # the claimer then takes the address: that is worse, and said too
    send(lab, ns, arp.build_announcement(INTEL, "10.0.0.151"))
    w.event("conflict", ip="10.0.0.151", mac=INTEL)
    w.metric('phoenix_hook_conflict_active{id="lxc/951",ip="10.0.0.151"}', lambda v: v == 1)


def test_ipv6_conflict_claim_and_resolved(lab, pve, watch):
    ip6 = "fd00::151"
    pve.guest(951, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip=manual,ip6={ip6}/64"})
    rogue = lab.add_host("rogue", mac=SQUAT)
    lab.ip(rogue, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
    claimer = lab.add_host("claimer", mac=SQUAT2)
    w = watch(watch={"verify_s": 1})
    send(lab, claimer, ndp.build_dad_probe(SQUAT2, ip6))
    c = w.event("claim", ip=ip6)
    assert (c["family"], c["mac"], c["how"]) == (6, SQUAT2, "probe")
    send(lab, rogue, ndp.build_advert(SQUAT, ip6))
    e = w.event("conflict", ip=ip6, mac=SQUAT)
    assert (e["family"], e["how"]) == (6, "advertisement")
    assert w.line(lambda x: x.startswith("<3>conflict: CT 951") and ip6 in x).endswith(
        "which advertised it (IPv6 Neighbor Advertisement); CT 951 is stopped")
    # the rogue's kernel answers the re-probes (DAD NS to its MAC) with NAs to all-nodes
    w.metric('phoenix_hook_frames_total{family="ipv6"}', lambda v: v >= 4, timeout=15)
    assert w.events("resolved") == []
    lab.ip(rogue, "addr", "del", f"{ip6}/64", "dev", "eth0")
    assert w.event("resolved", ip=ip6, timeout=15)["mac"] == SQUAT
    w.metric(f'phoenix_hook_conflict_active{{id="lxc/951",ip="{ip6}"}}', lambda v: v == 0)


def test_tagged_vlan_is_watched_in_its_own_vlan(lab, pve, watch, responder):
    pve.guest(951, nets={"net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24,tag=20"})
    pve.guest(910)
    ns = lab.add_host("v20", mac=SQUAT)
    w = watch()
    # heard untagged and in VLAN 30: other segments, nothing; in VLAN 20: the guest's
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.151"),
         arp.build_announcement(SQUAT, "10.0.0.151", vlan=30),
         arp.build_announcement(SQUAT, "10.0.0.151", vlan=20))
    e = w.event("conflict", ip="10.0.0.151")
    assert (e["vlan"], e["mac"]) == (20, SQUAT)
    assert w.line(lambda x: x.startswith("<3>conflict: CT 951")).startswith(
        f"<3>conflict: CT 951 ({e['name']}) net0 10.0.0.151 on vmbr0 VLAN 20 is in use by {SQUAT}")
    marker(lab, ns, w)
    assert len(w.events("conflict", ip="10.0.0.151")) == 1
    # a chatty host in VLAN 20 (tests/responder.py announces, tagged) on a second address
    pve.guest(952, nets={"net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B2,ip=10.0.0.152/24,tag=20"})
    os.kill(w.proc.pid, signal.SIGHUP)
    w.line(lambda x: "now watching" in x)
    responder(lab.add_host("chatty", mac=SQUAT2), "--iface", "eth0", "--ip", "10.0.0.152", "--vlan", "20",
              "--mode", "announce", "--delay-ms", "200")
    assert w.event("conflict", ip="10.0.0.152")["vlan"] == 20


def test_non_events(lab, pve, watch):
    """The guest's own MACs (also of a guest on another node), this host's MACs, ignore,
    ignore_macs, RARP, addresses no guest has, a guest asking for someone: none is an event."""
    guests(pve, 951, 910)
    pve.guest(952, node="pve2")
    pve.guest(953, nets={"net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B3,ip=dhcp"})
    ns = lab.add_host("lan", mac=SQUAT)
    # one of this host's MACs that is on no bridge (a bridge drops nothing, but warns about its own)
    lab.ip(lab.pve, "link", "add", "hx0", "type", "veth", "peer", "name", "hx1")
    host_mac = json.loads(lab.ip(lab.pve, "-j", "link", "show", "hx0").stdout)[0]["address"]
    w = watch(watch={"ignore_macs": "02:00:5e:00:01:0a", "reload_s": 3600}, settings={"ignore": "10.0.0.250"})
    pve.guest(950)                            # written after the start: not watched until a reload
    garp = arp.build_announcement(SQUAT, "10.0.0.151")
    rarp = garp[:12] + b"\x80\x35" + garp[14:20] + b"\x00\x03" + garp[22:]
    send(lab, ns,
         arp.build_announcement("52:54:00:67:89:b1", "10.0.0.151"),     # CT 951 itself
         arp.build_probe("52:54:00:67:89:b1", "10.0.0.151"),
         ndp.build_dad_probe("52:54:00:67:89:b1", "fd00::151"),
         arp.build_announcement("52:54:00:67:89:b2", "10.0.0.152"),     # CT 952, on node pve2
         arp.build_announcement(host_mac, "10.0.0.151"),                # one of this host's MACs
         arp.build_announcement("02:00:5e:00:01:0a", "10.0.0.151"),     # ignore_macs
         arp.build_announcement(SQUAT, "10.0.0.250"),                   # ignore
         arp.build_announcement(SQUAT, "10.0.0.153"),                   # a dhcp guest
         arp.build_announcement(SQUAT, "10.0.0.150"),                   # not watched yet
         arp.build_announcement(SQUAT, "10.0.0.77"),                    # nobody's
         arp.build_request(SQUAT, "10.0.0.77", "10.0.0.151"),           # asking for the guest
         rarp)                                                          # QEMU's RARP after a migration
    marker(lab, ns, w)
    assert [(e["event"], e["ip"]) for e in w.events()] == [("conflict", MARK_IP)], w.events()
    assert not any(x.startswith(("<3>", "<4>")) for x in w.lines if MARK_IP not in x), w.lines


def test_another_nodes_guest_is_watched_and_named_by_its_node(lab, pve, watch):
    pve.guest(952, node="pve2")
    ns = lab.add_host("lan", mac=SQUAT)
    w = watch()
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.152"))
    e = w.event("conflict", ip="10.0.0.152")
    assert (e["node"], e["watch_node"], e["guest_running"]) == ("pve2", "pve1", False)
    # once its own MAC has spoken for the address, it is taken as up
    send(lab, ns, arp.build_announcement("52:54:00:67:89:b2", "10.0.0.152"),
         arp.build_announcement(SQUAT2, "10.0.0.152"))
    e2 = w.event("conflict", ip="10.0.0.152", mac=SQUAT2)
    assert e2["guest_running"] is True
    assert "CT 952 lives on node pve2 and is up" in e2["message"]


# -- a flood ------------------------------------------------------------------------------------
def test_spoofed_flood_floods_nobody_and_detection_goes_on(lab, pve, watch):
    guests(pve, 951, 952)
    ns = lab.add_host("flood", mac=SQUAT)
    w = watch()
    rss_before = w.rss_kib()
    p = lab.run(ns, [sys.executable, str(SENDER), "--iface", "eth0", "--spoof", "10.0.0.151", "--count", "10000"],
                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, timeout=120)
    assert p.returncode == 0, p.stderr
    total = 'phoenix_hook_conflicts_total{id="lxc/951",ip="10.0.0.151"}'
    dropped = "phoenix_hook_frames_dropped_total"
    # every frame was judged or counted as dropped by the kernel
    w.metric(total, lambda v: v + w.metrics().get(dropped, 0) >= 10000, timeout=30)
    rss_after = w.rss_kib()
    assert len(w.events("conflict")) == 10                  # max_alerts_per_minute = 10
    assert sum(x.startswith("<3>conflict") for x in w.lines) == 10
    assert rss_after - rss_before < 20 * 1024, (rss_before, rss_after)
    # still detecting: a real squatter on another guest's address after the flood
    send(lab, ns, arp.build_announcement(SQUAT2, "10.0.0.152"))
    w.metric('phoenix_hook_conflict_active{id="lxc/952",ip="10.0.0.152"}', lambda v: v == 1)
    assert w.metrics()['phoenix_hook_conflicts_total{id="lxc/952",ip="10.0.0.152"}'] == 1
    # the rest is one summary line (at the end of the minute, or at exit)
    assert w.stop() == 0
    summary = w.events("suppressed")
    assert len(summary) == 1 and summary[0]["count"] == w.metrics()[total] + 1 - 10
    assert sum(x.startswith("<4>suppressed:") for x in w.lines) == 1


# -- the bridges ----------------------------------------------------------------------------------
def test_bridge_down_and_up_then_deleted_and_created_again(lab, pve, watch):
    for vmid in (951, 952, 910):
        pve.guest(vmid)
    ns = lab.add_host("lan", mac=SQUAT)
    port = json.loads(lab.ip(lab.pve, "-j", "link", "show", "master", "vmbr0").stdout)[0]["ifname"]
    w = watch()
    lab.ip(lab.pve, "link", "set", "vmbr0", "down")
    w.line(lambda x: x == "<4>vmbr0 went down; listening again once it is up")
    lab.ip(lab.pve, "link", "set", "vmbr0", "up")
    w.line(lambda x: x == "<5>vmbr0 is up again")
    lab.wait_link_ready()
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.151"))
    w.event("conflict", ip="10.0.0.151")
    lab.ip(lab.pve, "link", "del", "vmbr0")
    w.line(lambda x: x.startswith("<4>vmbr0 was deleted"))
    lab.add_bridge("vmbr0")
    lab.ip(lab.pve, "link", "set", port, "master", "vmbr0")
    w.line(lambda x: x in ("<5>listening on vmbr0 again",
                           "<4>vmbr0 was deleted and created again; listening on the new one"))
    lab.wait_link_ready()
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.152"))
    assert w.event("conflict", ip="10.0.0.152")["bridge"] == "vmbr0"
    assert w.proc.poll() is None


def test_a_bridge_that_appears_later(lab, pve, watch):
    pve.guest(951, nets={"net0": "name=eth0,bridge=vmbr1,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24"})
    w = watch()
    w.line(lambda x: x == "<5>bridge vmbr1 does not exist on this host (yet): 1 address on it will be "
                          "watched once it appears")
    lab.add_bridge("vmbr1")
    ns = lab.add_host("lan", mac=SQUAT, bridge="vmbr1")
    w.line(lambda x: x == "<5>listening on vmbr1 now (it appeared)")
    lab.wait_link_ready()
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.151"))
    assert w.event("conflict", ip="10.0.0.151")["bridge"] == "vmbr1"


# -- configs --------------------------------------------------------------------------------------
def test_reload_picks_up_a_new_guest_and_an_unreadable_tree_keeps_the_last_set(lab, pve, watch):
    guests(pve, 951, 910)
    ns = lab.add_host("lan", mac=SQUAT)
    w = watch(watch={"reload_s": 1}, env_extra={"WATCHDOG_USEC": "200000"})
    pve.guest(957, spec_vmid=952, nets={"net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:D7,"
                                                "ip=10.0.0.157/24"})
    w.line(lambda x: x.startswith("<6>now watching 3 addresses of 3 guests (1 new, 0 gone)"))
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.157"))
    assert w.event("conflict", ip="10.0.0.157")["vmid"] == 957
    # the tree goes away for a while: said once, the last good set still watched
    nodes = pve.root / "nodes"
    nodes.rename(pve.root / "nodes.away")
    w.line(lambda x: x.startswith("<4>cannot read the guest configs (") and
           x.endswith("keeping the last good set of 3 addresses until they can be read again"))
    pings = sum(n.startswith("WATCHDOG=1") for n in w.notes)
    wait_until(lambda: sum(n.startswith("WATCHDOG=1") for n in w.notes) >= pings + 3,
               what="three more ticks")                     # a tick and a reload a second: more reloads fail ...
    assert sum("cannot read the guest configs" in x for x in w.lines) == 1   # ... said once
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.151"))
    w.event("conflict", ip="10.0.0.151")
    (pve.root / "nodes.away").rename(nodes)
    w.line(lambda x: x == "<5>the guest configs can be read again")


def test_sighup_rereads_at_once(lab, pve, watch):
    guests(pve, 951)
    ns = lab.add_host("lan", mac=SQUAT)
    w = watch(watch={"reload_s": 3600})
    pve.guest(952)
    os.kill(w.proc.pid, signal.SIGHUP)
    w.line(lambda x: x == "<6>settings reloaded (SIGHUP)")
    w.line(lambda x: x.startswith("<6>now watching 2 addresses"))
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.152"))
    w.event("conflict", ip="10.0.0.152")


# -- channels -------------------------------------------------------------------------------------
def test_webhook_gets_each_event_as_json(lab, pve, watch, tmp_path):
    guests(pve, 951)
    got = tmp_path / "posts.log"
    lab.spawn(lab.pve, [sys.executable, str(RECEIVER), "--port", "8089", "--log", str(got)], ready="ready")
    ns = lab.add_host("lan", mac=SQUAT)
    w = watch(watch={"webhook_url": "http://127.0.0.1:8089/phoenix"})
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.151"))
    logged = w.event("conflict", ip="10.0.0.151")
    posted = wait_until(lambda: got.exists() and got.read_text().splitlines(), what="a POST")
    assert json.loads(posted[0]) == logged


def test_a_hanging_webhook_never_holds_up_detection(lab, pve, watch, tmp_path):
    guests(pve, 951, 952, 910)
    got = tmp_path / "conns.log"
    lab.spawn(lab.pve, [sys.executable, str(RECEIVER), "--port", "8090", "--log", str(got), "--hang"],
              ready="ready")
    ns = lab.add_host("lan", mac=SQUAT)
    w = watch(watch={"webhook_url": "http://127.0.0.1:8090/", "webhook_timeout_s": 30})
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.151"))
    w.event("conflict", ip="10.0.0.151")
    wait_until(lambda: got.exists() and got.read_text(), what="the webhook's connection")
    # the worker now waits up to 30 s for an answer; the capture goes on meanwhile
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.152"))
    w.event("conflict", ip="10.0.0.152")
    marker(lab, ns, w)
    assert got.read_text().count("connection") == 1          # still the first POST
    assert w.stop() == 0


def test_pve_notify_is_called_for_this_nodes_guests_only(lab, pve, watch, tmp_path):
    guests(pve, 951, 910)
    pve.guest(952, node="pve2")
    calls = tmp_path / "notify.jsonl"
    templates = tmp_path / "pve-templates"             # PVE 8.2+: the template directory exists
    templates.mkdir()
    ns = lab.add_host("lan", mac=SQUAT)
    w = watch(watch={"notify": "pve"},
              env_extra={"PERL5LIB": str(PERL_LIB), "PHOENIX_TEST_NOTIFY_LOG": str(calls),
                         "PHOENIX_PVE_TEMPLATES": str(templates)})
    send(lab, ns, arp.build_announcement(SQUAT, "10.0.0.152"), arp.build_announcement(SQUAT, "10.0.0.151"))
    w.event("conflict", ip="10.0.0.151")
    w.event("conflict", ip="10.0.0.152")                # logged ...
    wait_until(lambda: calls.exists() and calls.read_text().splitlines(), what="a notify() call")
    marker(lab, ns, w)                                   # CT 910 is this node's: notified after CT 952's turn
    wait_until(lambda: len(calls.read_text().splitlines()) >= 2, what="the marker's notify() call")
    recorded = [json.loads(x) for x in calls.read_text().splitlines()]
    assert [r[2]["ip"] for r in recorded] == ["10.0.0.151", MARK_IP]   # ... but only this node's guests
    severity, template, data, fields = recorded[0]
    assert (severity, template) == ("error", "phoenix-hook-conflict")
    assert fields == {"type": "phoenix-hook", "hostname": "pve1"}
    assert (data["ip"], data["mac"], data["vmid"], data["event"]) == ("10.0.0.151", SQUAT, "951", "conflict")
    assert data["title"] == "CT 951: 10.0.0.151 is in use by another device"


def test_pve_81_gets_the_templates_in_the_call(tmp_path):
    """No template directory (PVE 8.1): notify($severity, $title, $body, $data, $fields).
    Runs the real perl and the stand-in module; no network."""
    from phoenix_hook.watch import channels
    calls = tmp_path / "notify.jsonl"
    env = dict(os.environ, PERL5LIB=str(PERL_LIB), PHOENIX_TEST_NOTIFY_LOG=str(calls),
               PHOENIX_PVE_TEMPLATES=str(tmp_path / "none"))
    assert channels.notify_loads(environ=env) is None
    said = []
    n = channels.PveNotify(channels.Once(lambda t, p: said.append(t)), environ=env)
    try:
        assert n.api == "8.1"
        n.handle(("warning", {"title": "t", "message": "m"}, {"type": "phoenix-hook", "hostname": "pve1"}))
    finally:
        n.stop()
    sev, subject, body, data, fields = json.loads(calls.read_text())
    assert (sev, data["title"], fields["type"]) == ("warning", "t", "phoenix-hook")
    shipped = Path(channels.TEMPLATE_DIR)
    assert subject == (shipped / "phoenix-hook-conflict-subject.txt.hbs").read_text()
    assert body == (shipped / "phoenix-hook-conflict-body.txt.hbs").read_text()
    # a failing PVE::Notify: an error the worker reports (once), never a crash
    env["PHOENIX_TEST_NOTIFY_FAIL"] = "no notification targets"
    n = channels.PveNotify(channels.Once(lambda t, p: said.append(t)), environ=env)
    try:
        with pytest.raises(RuntimeError, match="no notification targets"):
            n.handle(("error", {}, {}))
    finally:
        n.stop()


def test_notify_pve_without_pve_notify_is_a_clear_start_error(lab, pve, tmp_path):
    guests(pve, 951)
    pve.settings(extra_sections=f"[watch]\nnotify = pve\nlog_file = {tmp_path}/w.jsonl\n")
    p = subprocess.run(["ip", "netns", "exec", lab.pve, sys.executable, "-m", "phoenix_hook", "watch"],
                       env=pve.env({"PERL5LIB": str(tmp_path / "empty")}), capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p.stdout + p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("phoenix-hook: [watch] notify = pve, but PVE::Notify does not load (")
    assert last.endswith("install libpve-notify-perl (PVE 8.1 or later) or set notify = auto")
    assert "Traceback" not in p.stdout + p.stderr


def test_bad_watch_settings_exit_2(lab, pve):
    pve.settings(extra_sections="[watch]\nverify_s = never\n")
    p = subprocess.run([sys.executable, "-m", "phoenix_hook", "watch"], env=pve.env(), capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "verify_s = 'never' is not valid" in p.stderr


# -- systemd --------------------------------------------------------------------------------------
def test_ready_status_watchdog_and_sigterm(lab, pve, watch):
    guests(pve, 951, 952)
    w = watch(env_extra={"WATCHDOG_USEC": "400000"})
    ready = next(n for n in w.notes if n.startswith("READY=1"))
    assert "STATUS=watching 2 addresses of 2 guests on vmbr0" in ready
    assert w.lines[0].startswith("<6>watching 2 addresses of 2 guests (vmbr0); alerts: journal, ")
    wait_until(lambda: sum(n.startswith("WATCHDOG=1") for n in w.notes) >= 2, what="two watchdog pings")
    assert w.stop(signal.SIGTERM) == 0
    assert w.lines[-1] == "<6>stopped"


def test_list_shows_what_is_watched_and_where(lab, pve, run_cli):
    guests(pve, 951)
    pve.guest(952, nets={"net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B2,ip=10.0.0.152/24,tag=20"})
    pve.guest(953, nets={"net0": "name=eth0,bridge=vmbr7,hwaddr=52:54:00:67:89:B3,ip=10.0.0.153/24"})
    code, out, err = run_cli(lab, "watch", "--list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "3 addresses of 3 guests"
    assert any("CT 951" in x and "10.0.0.151 on vmbr0" in x and x.endswith("heard on vmbr0") for x in lines)
    assert any("CT 952" in x and x.endswith("heard on vmbr0 tagged 20") for x in lines)
    assert any("CT 953" in x and x.endswith("not heard: vmbr7 does not exist on this host") for x in lines)

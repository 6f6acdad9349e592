"""VLAN paths without a VLAN kernel: the temporary probe port's life cycle, uplink VLAN devices,
/proc/net/vlan/config, and scan's choice of path, with fakes (no root, no sockets).

The same scenarios on a real kernel (802.1Q, VLAN filtering) run in the VM lab:
tests/vmlab/test_vm_vlan.py.
"""
from __future__ import annotations

import os
from phoenix_hook.records import replace

import pytest
from hypothesis import given, strategies as st

from phoenix_hook.checks.check import HostFacts, Options, plan_nic, run_check
from phoenix_hook.errors import CannotCheck
from phoenix_hook.net import acd, arp, hostnet, probeport, sweep
from phoenix_hook.net.hostnet import Link
from phoenix_hook.net.wire import WireError
from phoenix_hook.pve.guest import parse_config
from phoenix_hook.settings import Settings

BR0 = "02:aa:00:00:00:01"
PEER = "02:bb:00:00:00:07"
SQUAT = "16:0d:a0:c0:b9:1b"
S = Settings(node="pve1")

VLAN_CONFIG = """VLAN Dev name	 | VLAN ID
Name-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD
eno1.20        | 20  | eno1
bond0.30       | 30  | bond0
vmbr0.40       | 40  | vmbr0
"""


def bridge(vf=False, uplinks=(("eno1", True),)):
    return Link(name="vmbr0", mac=BR0, up=True, noarp=False, carrier=True, is_bridge=True,
                vlan_filtering=vf, uplinks=uplinks)


def ct(*nets):
    g = parse_config("hostname: ct\n" + "".join(f"net{i}: name=eth{i},{v}\n" for i, v in enumerate(nets)),
                     951, node="pve1")
    return g


# -- /proc/net/vlan/config and uplink VLAN devices ----------------------------------

def test_parse_vlan_config():
    assert hostnet.parse_vlan_config(VLAN_CONFIG) == {
        "eno1.20": (20, "eno1"), "bond0.30": (30, "bond0"), "vmbr0.40": (40, "vmbr0")}
    assert hostnet.parse_vlan_config("") == {}
    assert hostnet.parse_vlan_config("x | 0 | eno1\ny | 4095 | eno1\nz | a | eno1\n | 5 | eno1\n") == {}


@given(st.text())
def test_parse_vlan_config_never_raises(text):
    for name, (vid, lower) in hostnet.parse_vlan_config(text).items():
        assert name and lower and 1 <= vid <= 4094


def test_vlan_taps_are_uplinks_with_a_vlan_device_for_that_vid():
    devs = hostnet.parse_vlan_config(VLAN_CONFIG) | {"veth951i0.20": (20, "veth951i0"), "eno9.20": (20, "eno9")}
    br = bridge(uplinks=(("eno1", True), ("bond0", False)))      # guest ports are never uplinks
    assert hostnet.vlan_taps(br, devs, 20) == ("eno1",)
    assert hostnet.vlan_taps(br, devs, 30) == ("bond0",)
    assert hostnet.vlan_taps(br, devs, 40) == ()                 # vmbr0.40 sits on the bridge: frames reach it
    assert hostnet.vlan_taps(None, devs, 20) == ()


# -- names of the temporary port ---------------------------------------------------

@given(st.integers(1, 4194304), st.integers(0, 35))
def test_probe_port_names_round_trip_and_stay_out_of_pves_patterns(pid, index):
    port, peer = probeport.names(pid, index)
    assert len(port) <= 15 and len(peer) <= 15                  # IFNAMSIZ
    assert probeport.owner_pid(port) == probeport.owner_pid(peer) == pid
    assert hostnet.is_probe_port(port) and hostnet.is_probe_port(peer)
    assert not hostnet.is_guest_port(port) and not hostnet.is_guest_port(peer)
    # PVE's ifupdown2 keeps ports matching ^(tap|veth|fwpr) on the bridge at ifreload
    assert port.startswith("veth") and "." not in port


def test_other_names_have_no_owner():
    assert all(probeport.owner_pid(n) is None for n in ("veth951i0", "eno1", "vethphx", "phxq12", "vethphx00001"))


def test_probe_ports_are_not_uplinks(tmp_path, monkeypatch):
    """A concurrent run's temporary port must not pass for an uplink with carrier."""
    port, _peer = probeport.names(4242, 0)
    sysnet = tmp_path / "net"
    for name, files in {"vmbr0": {"address": BR0, "flags": "0x1003", "carrier": "1"},
                        "eno1": {"address": "02:00:00:00:00:e1", "carrier": "0"},
                        port: {"address": PEER, "carrier": "1"}}.items():
        (sysnet / name).mkdir(parents=True)
        for f, v in files.items():
            (sysnet / name / f).write_text(v + "\n")
    (sysnet / "vmbr0" / "bridge").mkdir()
    (sysnet / "vmbr0" / "brif").mkdir()
    for p in ("eno1", port, "veth951i0"):
        (sysnet / "vmbr0" / "brif" / p).mkdir()
    monkeypatch.setattr(hostnet, "SYS_NET", str(sysnet))
    assert hostnet.link("vmbr0").uplinks == (("eno1", False),)


def test_clean_stale_deletes_only_ports_of_dead_processes(tmp_path, monkeypatch):
    dead = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 1000
    while os.path.exists(f"/proc/{dead}"):
        dead += 1
    stale, stale_peer = probeport.names(dead, 3)
    live, _ = probeport.names(1, 0)                              # PID 1 always exists
    mine, _ = probeport.names(os.getpid(), 0)
    for n in (stale, stale_peer, live, mine, "veth951i0", "eno1"):
        (tmp_path / n).mkdir()
    deleted = []
    monkeypatch.setattr(hostnet, "SYS_NET", str(tmp_path))
    monkeypatch.setattr(probeport, "_delete", deleted.append)
    assert probeport.clean_stale() == [stale]
    assert deleted == [stale]                                   # the pair goes with its bridge end


# -- plan_nic and the probe run --------------------------------------------------------

def test_plan_admin_vlan_device_on_the_uplink_is_heard_there():
    """Traditional vmbr0, an admin's eno1.20 and no vmbr0v20: VLAN 20's answers from the LAN go to
    eno1.20, never to vmbr0. The probe goes out tagged on vmbr0 and is heard on eno1 as well."""
    g = ct("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    facts = HostFacts(links={"vmbr0": bridge()}, macs=frozenset({BR0}),
                      vlan_devs=hostnet.parse_vlan_config(VLAN_CONFIG))
    c = plan_nic(g, g.nics[0], S, facts)
    assert (c.iface, c.tagged, c.also_hear) == ("vmbr0", True, (("eno1", 20),))
    assert c.hears == (("vmbr0", 20), ("eno1", 20))
    # PVE's own arrangement: eno1.20 in vmbr0v20, which gets the answers untagged
    v20 = replace(bridge(), name="vmbr0v20", mac="02:aa:00:00:00:20", uplinks=(("eno1.20", True),))
    c = plan_nic(g, g.nics[0], S, replace(facts, links={"vmbr0": bridge(), "vmbr0v20": v20}))
    assert (c.iface, c.tagged, c.also_hear) == ("vmbr0v20", False, ())


def test_judge_hears_only_the_listed_interfaces_and_vlans():
    c = acd.Candidate(key="net0", ip="10.0.20.5", iface="vmbr0", src_mac=BR0, vlan=20, tagged=True,
                      also_hear=(("eno1", 20),))
    reply = arp.parse(arp.build_reply(SQUAT, "10.0.20.5", BR0, "0.0.0.0", vlan=20))
    assert acd.judge(reply, "eno1", c, frozenset()) is not None
    assert acd.judge(reply, "vmbr0", c, frozenset()) is not None
    other = arp.parse(arp.build_reply(SQUAT, "10.0.20.5", BR0, "0.0.0.0", vlan=30))
    assert acd.judge(other, "eno1", c, frozenset()) is None
    plain = arp.parse(arp.build_reply(SQUAT, "10.0.20.5", BR0, "0.0.0.0"))
    assert acd.judge(plain, "eno1", c, frozenset()) is None


class FakePort:
    def __init__(self, bridge, vid, log, broken=None):
        self.bridge, self.vid = bridge, vid
        self.port, self.peer = probeport.names(4242, len(log))
        self.mac, self.log, self._broken = PEER, log, broken
        log.append(("open", bridge, vid))

    def broken(self):
        return self._broken

    def close(self):
        self.log.append(("close", self.bridge, self.vid))


class PortWire:
    """The LAN behind a temporary port: a squatter in VLAN 20 answers untagged probes on the peer."""

    def __init__(self, clock, squat=None, fail=None):
        self.clock, self.squat, self.fail = clock, squat, fail
        self.sent, self.inbox, self.ifaces = [], [], None

    def __call__(self, ifaces):
        self.ifaces = set(ifaces)
        if self.fail:
            raise self.fail
        return self

    def send(self, ifname, frame):
        self.sent.append((ifname, frame))
        p = arp.parse(frame)
        if self.squat and ifname.startswith("phxq") and p.vlan is None and p.target_ip == self.squat:
            self.inbox.append((ifname, arp.build_reply(SQUAT, p.target_ip, p.sender_mac, "0.0.0.0"), None))

    def receive(self, timeout):
        out, self.inbox = self.inbox, []
        self.clock.now += timeout if not out else 0.001
        return out

    def close(self):
        pass


AWARE = HostFacts(links={"vmbr0": bridge(vf=True)}, macs=frozenset({BR0}), self_vlans={"vmbr0": {1: True}})


def check(guests, wire, clock, ports, port_error=None, broken=None, **opt):
    log = []

    def factory(bridge, vid):
        if port_error:
            raise probeport.PortError(port_error)
        p = FakePort(bridge, vid, log, broken)
        ports.append(p)
        return p
    opt.setdefault("timeout", 900)
    rep = run_check(guests, S, Options(**opt), facts=AWARE, wire_factory=wire, port_factory=factory,
                    describe=lambda mac: (None, "vendor unknown"))
    return rep, log


def test_run_check_probes_through_one_port_per_bridge_and_vlan(clock):
    g = ct("bridge=vmbr0,ip=10.0.20.5/24,tag=20", "bridge=vmbr0,ip=10.0.20.6/24,tag=20",
           "bridge=vmbr0,ip=10.0.30.6/24,tag=30")
    wire, ports = PortWire(clock), []
    rep, log = check([g], wire, clock, ports, stop_on_first=False)
    assert [n.verdict for n in rep.guests[0].nics] == ["clear"] * 3
    assert all(n.note.endswith(f"through a temporary port in VLAN {n.vlan}") for n in rep.guests[0].nics)
    assert sorted(log) == [("close", "vmbr0", 20), ("close", "vmbr0", 30), ("open", "vmbr0", 20), ("open", "vmbr0", 30)]
    assert wire.ifaces == {p.peer for p in ports}
    # untagged probes from the port's own MAC, on its host end
    assert {(i, arp.parse(f).vlan, arp.parse(f).sender_mac) for i, f in wire.sent} == {(p.peer, None, PEER) for p in ports}


def test_run_check_squatter_behind_the_port_is_a_conflict(clock):
    g = ct("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    rep, log = check([g], PortWire(clock, squat="10.0.20.5"), clock, [])
    n = rep.guests[0].nics[0]
    assert (n.verdict, [c.mac for c in n.conflicts], rep.exit_code) == ("conflict", [SQUAT], 1)
    assert log[-1] == ("close", "vmbr0", 20)


def test_run_check_port_that_cannot_be_made_is_could_not_check(clock):
    g = ct("bridge=vmbr0,ip=10.0.20.5/24,tag=20", "bridge=vmbr0,ip=10.0.0.5/24")
    wire = PortWire(clock)
    rep, _ = check([g], wire, clock, [], port_error="could not add a temporary port in VLAN 20 on vmbr0: boom",
                   stop_on_first=False)
    v20, untagged = rep.guests[0].nics
    assert (v20.verdict, v20.note) == ("error", "could not add a temporary port in VLAN 20 on vmbr0: boom")
    assert untagged.verdict == "clear" and wire.ifaces == {"vmbr0"}   # the rest is still probed
    assert rep.exit_code == 3


def test_run_check_port_broken_during_the_probe_is_never_free(clock):
    g = ct("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    rep, log = check([g], PortWire(clock), clock, [], broken="the temporary probe port vethphx was deleted")
    n = rep.guests[0].nics[0]
    assert (n.verdict, n.note) == ("error", "the temporary probe port vethphx was deleted")
    assert log[-1][0] == "close"


@pytest.mark.parametrize("fail", [WireError(19, "cannot open phxq: No such device"), None])
def test_run_check_port_is_deleted_after_a_failure_or_the_deadline(clock, fail):
    g = ct("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    deadline = None if fail else clock.now + 0.05
    rep, log = check([g], PortWire(clock, fail=fail), clock, [], deadline=deadline)
    n = rep.guests[0].nics[0]
    assert n.verdict == "error" and ("could not probe" in n.note or "deadline" in n.note), n.note
    assert log == [("open", "vmbr0", 20), ("close", "vmbr0", 20)]


def test_run_check_port_is_deleted_when_the_run_is_interrupted(clock):
    """SIGALRM (the hook's DeadlineExceeded) can land anywhere: the finally still deletes the port."""
    class Boom(Exception):
        pass

    class Interrupted(PortWire):
        def receive(self, timeout):
            raise Boom()
    g = ct("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    log = []
    with pytest.raises(Boom):
        run_check([g], S, Options(timeout=900), facts=AWARE, wire_factory=Interrupted(clock),
                  port_factory=lambda b, v: FakePort(b, v, log), describe=lambda m: (None, "x"))
    assert log == [("open", "vmbr0", 20), ("close", "vmbr0", 20)]


# -- scan's path -------------------------------------------------------------------------

@pytest.fixture
def host(monkeypatch):
    """A fake host: links by name, the bridge's own VLANs, 802.1Q devices."""
    state = {"links": {}, "self": {1: True}, "devs": {}}
    monkeypatch.setattr(hostnet, "link", lambda n: state["links"].get(n))
    monkeypatch.setattr(hostnet, "bridge_self_vlans", lambda n: state["self"])
    monkeypatch.setattr(hostnet, "vlan_devices", lambda: state["devs"])
    return state


def test_scan_path_on_a_standard_vlan_aware_bridge_is_a_temporary_port(host):
    host["links"]["vmbr0"] = bridge(vf=True)
    host["devs"] = {"eno1.20": (20, "eno1")}
    p = sweep.choose_path("vmbr0", 20)
    assert (p.port_vlan, p.tag, p.hears) == (20, None, (("eno1", 20),))
    host["self"] = {1: True, 20: False}
    p = sweep.choose_path("vmbr0", 20)
    assert (p.link.name, p.tag, p.port_vlan, p.hears) == ("vmbr0", 20, None, (("vmbr0", 20), ("eno1", 20)))
    host["self"] = {1: True, 20: True}                          # Egress Untagged on the bridge itself
    assert sweep.choose_path("vmbr0", 20).hears[0] == ("vmbr0", None)
    host["self"] = None
    with pytest.raises(CannotCheck, match="cannot read the VLANs of vmbr0 itself"):
        sweep.choose_path("vmbr0", 20)


def test_scan_path_on_a_traditional_bridge(host):
    host["links"]["vmbr0"] = bridge()
    host["devs"] = {"eno1.20": (20, "eno1")}
    p = sweep.choose_path("vmbr0", 20)
    assert (p.link.name, p.tag, p.hears) == ("vmbr0", 20, (("vmbr0", 20), ("eno1", 20)))
    host["links"]["vmbr0v20"] = replace(bridge(), name="vmbr0v20")
    p = sweep.choose_path("vmbr0", 20)
    assert (p.link.name, p.tag, p.hears) == ("vmbr0v20", None, (("vmbr0v20", None),))
    host["links"]["vmbr0v20"] = replace(bridge(), name="vmbr0v20", up=False)
    with pytest.raises(CannotCheck, match="vmbr0v20 .* is down"):
        sweep.choose_path("vmbr0", 20)
    assert sweep.choose_path("vmbr0", None).hears == (("vmbr0", None),)


# -- the watch ---------------------------------------------------------------------------

def test_watch_hears_an_uplinks_own_vlan_device():
    """Traditional vmbr0 with the admin's eno1.20 and no vmbr0v20: VLAN 20 is heard on eno1 too."""
    from phoenix_hook.watch import targets
    segs = {("vmbr0", 20), ("vmbr0", 30), ("vmbr0", None)}
    devs = {"eno1.20": (20, "eno1")}
    p = targets.listen_plan(segs, {"vmbr0": bridge(), "vmbr0v20": None, "vmbr0v30": None}, {}, devs)
    assert p.rx[("eno1", 20)] == (("vmbr0", 20),) and ("eno1", 30) not in p.rx
    assert set(p.ifaces) == {"vmbr0", "eno1"}
    aware = targets.listen_plan(segs, {"vmbr0": bridge(vf=True)}, {"vmbr0": {1: True}}, devs)
    assert aware.rx[("eno1", 20)] == (("vmbr0", 20),)
    pve = targets.listen_plan(segs, {"vmbr0": bridge(), "vmbr0v20": replace(bridge(), name="vmbr0v20")}, {}, devs)
    assert ("eno1", 20) not in pve.rx                     # PVE's vmbr0v20 gets VLAN 20 untagged


def test_watch_announces_nothing_in_a_vlan_the_bridge_is_not_in():
    from phoenix_hook.watch import announce
    g = ct("bridge=vmbr0,hwaddr=52:54:00:67:89:b1,ip=10.0.20.5/24,tag=20",
           "bridge=vmbr0,hwaddr=52:54:00:67:89:b2,ip=10.0.0.5/24")
    anns = announce.plan(g, S, AWARE)
    assert [(a.iface, a.vlan, a.ip) for a in anns] == [("vmbr0", None, "10.0.0.5")]

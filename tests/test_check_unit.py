"""check.py, pure parts (plan_nic, config_warnings, mac_owners, wire_finding) and run_check
driven by a fake wire and a fake clock: no sockets, no root, no sleeping."""
from __future__ import annotations

import errno

import pytest

from phoenix_hook.net import acd, arp
from phoenix_hook.checks import check
from phoenix_hook.checks.check import HostFacts, Options, config_warnings, mac_owners, plan_nic, run_check, wire_finding
from phoenix_hook.pve.guest import Guest, Nic, parse_config, with_node
from phoenix_hook.net.hostnet import Link
from phoenix_hook.checks.report import NicResult
from phoenix_hook.settings import Settings, parse as parse_settings
from phoenix_hook.net.wire import WireError

BR0 = "02:aa:00:00:00:01"
BR1 = "02:aa:00:00:00:02"
V20 = "02:aa:00:00:00:20"
SQUAT = "16:0d:a0:c0:b9:1b"
GUEST_MAC = "52:54:00:67:89:b1"
S = Settings(node="pve1")


def link(name, mac, up=True, noarp=False, carrier=True, bridge=True, vf=False):
    return Link(name=name, mac=mac, up=up, noarp=noarp, carrier=carrier, is_bridge=bridge, vlan_filtering=vf)


def facts(*links, local_ips=(), macs=(), self_vlans=None):
    # a VLAN-aware bridge is in every VLAN itself (bridge-vids 2-4094) unless told otherwise
    if self_vlans is None:
        self_vlans = {lk.name: {v: False for v in range(1, 4095)} for lk in links if lk.vlan_filtering}
    return HostFacts(links={lk.name: lk for lk in links}, local_ips=frozenset(local_ips),
                     macs=frozenset(macs) | {lk.mac for lk in links}, self_vlans=self_vlans)


def ct(vmid, *nets, name="ct", node="pve1", extra=()):
    lines = [f"hostname: {name}", *extra] + [f"net{i}: name=eth{i},{v}" for i, v in enumerate(nets)]
    return parse_config("\n".join(lines) + "\n", vmid, node=node)


def nic0(*nets, **kw):
    g = ct(951, *nets, **kw)
    return g, g.nics[0]


# -- plan_nic -------------------------------------------------------------------

def test_plan_error_nic_names_guest_key_and_fix():
    g, n = nic0("bridge=vmbr0,hwaddr=zz,ip=10.0.0.151/24")
    r = plan_nic(g, n, S, facts(link("vmbr0", BR0)))
    assert isinstance(r, NicResult) and r.verdict == "error"
    assert "hwaddr='zz'" in r.note and "pct set 951 --net0" in r.note
    # the guest and the NIC are named wherever the note is shown; not again inside it
    assert "net0 of" not in r.note and "CT 951" not in r.note


@pytest.mark.parametrize("ip, note", [("ip=dhcp,", "ip=dhcp"), ("ip=manual,", "ip=manual"),
                                      ("", "no IPv4 address configured")])
def test_plan_non_static_skipped(ip, note):
    g, n = nic0(f"{ip}bridge=vmbr0")
    r = plan_nic(g, n, S, facts(link("vmbr0", BR0)))
    assert r.verdict == "skipped" and note in r.note


def test_plan_no_bridge_skipped():
    g, n = nic0("ip=10.0.0.151/24")
    r = plan_nic(g, n, S, facts())
    assert r.verdict == "skipped" and "no bridge" in r.note


def test_plan_ignored_address_skipped():
    s = parse_settings("[phoenix-hook]\nnode = pve1\nignore = 10.0.0.0/28, 10.0.0.151\n")
    g, n = nic0("bridge=vmbr0,ip=10.0.0.151/24")
    r = plan_nic(g, n, s, facts(link("vmbr0", BR0)))
    assert r.verdict == "skipped" and "ignore" in r.note
    g, n = nic0("bridge=vmbr0,ip=10.0.0.152/24")
    assert isinstance(plan_nic(g, n, s, facts(link("vmbr0", BR0))), acd.Candidate)


def test_plan_host_address_is_conflict_without_probing():
    g, n = nic0("bridge=vmbr0,ip=10.0.0.2/24")
    r = plan_nic(g, n, S, facts(link("vmbr0", BR0), local_ips={"10.0.0.2"}))
    assert r.verdict == "conflict" and r.conflicts[0].source == "host" and r.conflicts[0].mac is None
    assert "this host" in r.conflicts[0].detail


def test_plan_host_address_beats_missing_bridge():
    g, n = nic0("bridge=vmbr9,ip=10.0.0.2/24")
    assert plan_nic(g, n, S, facts(local_ips={"10.0.0.2"})).verdict == "conflict"


@pytest.mark.parametrize("lk, words", [
    (None, "bridge vmbr0 does not exist"),
    (link("vmbr0", BR0, up=False, carrier=False), "bridge vmbr0 is down"),
    (link("vmbr0", BR0, noarp=True), "NOARP"),
])
def test_plan_bridge_unusable_is_error(lk, words):
    g, n = nic0("bridge=vmbr0,ip=10.0.0.151/24")
    f = facts(lk) if lk else facts()
    r = plan_nic(g, n, S, f)
    assert r.verdict == "error" and words in r.note


def test_plan_untagged_candidate():
    g, n = nic0(f"bridge=vmbr0,hwaddr={GUEST_MAC},ip=10.0.0.151/24")
    c = plan_nic(g, n, S, facts(link("vmbr0", BR0)), running=True)
    assert c == acd.Candidate(key="net0", ip="10.0.0.151", iface="vmbr0", src_mac=BR0, vlan=None,
                              tagged=False, guest_mac=GUEST_MAC, guest_running=True)


def test_plan_vlan_aware_bridge_sends_tagged_on_bridge():
    g, n = nic0("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    c = plan_nic(g, n, S, facts(link("vmbr0", BR0, vf=True), link("vmbr0v20", V20)))
    assert (c.iface, c.tagged, c.vlan, c.src_mac, c.rx_vlan) == ("vmbr0", True, 20, BR0, 20)


def test_plan_vmbrXvN_present_probes_untagged_there():
    g, n = nic0("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    c = plan_nic(g, n, S, facts(link("vmbr0", BR0), link("vmbr0v20", V20)))
    assert (c.iface, c.tagged, c.vlan, c.src_mac, c.rx_vlan) == ("vmbr0v20", False, 20, V20, None)


def test_plan_vmbrXvN_absent_tags_on_bridge():
    g, n = nic0("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    c = plan_nic(g, n, S, facts(link("vmbr0", BR0)))
    assert (c.iface, c.tagged, c.src_mac) == ("vmbr0", True, BR0)
    assert arp.parse(c.probe_frame()).vlan == 20


@pytest.mark.parametrize("vbr,words", [(link("vmbr0v20", V20, up=False, carrier=False), "is down"),
                                       (link("vmbr0v20", V20, noarp=True), "is NOARP")])
def test_plan_vmbrXvN_unusable_is_an_error(vbr, words):
    """Its uplink eno1.20 takes VLAN 20's answers off vmbr0: a tagged probe would hear nothing."""
    g, n = nic0("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    r = plan_nic(g, n, S, facts(link("vmbr0", BR0), vbr))
    assert r.verdict == "error" and f"vmbr0v20 (PVE's bridge for VLAN 20) {words}" in r.note


def test_plan_no_carrier_is_clear_with_reason():
    g, n = nic0("bridge=vmbr0,ip=10.0.0.151/24")
    r = plan_nic(g, n, S, facts(link("vmbr0", BR0, carrier=False)))
    assert r.verdict == "clear" and "no port of vmbr0 is up" in r.note


def test_plan_no_carrier_checked_on_the_iface_actually_used():
    g, n = nic0("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    r = plan_nic(g, n, S, facts(link("vmbr0", BR0), link("vmbr0v20", V20, carrier=False)))
    assert r.verdict == "clear" and "vmbr0v20" in r.note


# -- config_warnings, mac_owners, wire_finding --------------------------------------

def _cluster():
    me = ct(951, "bridge=vmbr0,ip=10.0.0.151/24", f"bridge=vmbr1,ip=192.168.50.151/24,tag=20,hwaddr={GUEST_MAC}")
    same = ct(952, "bridge=vmbr0,ip=10.0.0.151/24", name="other", node="pve2")
    other_bridge = ct(953, "bridge=vmbr1,ip=10.0.0.151/24", node="pve2")
    other_vlan = ct(954, "bridge=vmbr1,ip=192.168.50.151/24,tag=30")
    same_vlan_tpl = ct(900, f"bridge=vmbr1,ip=192.168.50.151/24,tag=20,hwaddr={SQUAT}",
                       name="base-template", node="pve3", extra=["template: 1"])
    dhcp = ct(955, "bridge=vmbr0,ip=dhcp")
    return me, [me, same, other_bridge, other_vlan, same_vlan_tpl, dhcp]


def test_config_warnings_same_bridge_and_vlan_only():
    me, cluster = _cluster()
    w0 = config_warnings(me, me.nic("net0"), cluster)
    assert [(w.source, w.vmid, w.node) for w in w0] == [("config", 952, "pve2")]
    assert w0[0].detail == "CT 952 (other) on node pve2 is also configured with 10.0.0.151 (net0)"
    w1 = config_warnings(me, me.nic("net1"), cluster)
    assert [(w.vmid, w.node) for w in w1] == [(900, "pve3")]
    assert w1[0].detail.startswith("template CT 900 (base-template) on node pve3")


def test_config_warnings_none_for_self_or_no_address():
    me, cluster = _cluster()
    assert config_warnings(me, me.nic("net0"), [me]) == []
    dhcp = cluster[-1]
    assert config_warnings(dhcp, dhcp.nic("net0"), cluster) == []


def test_config_warnings_ignore_unreadable_nics():
    me, _ = _cluster()
    broken = ct(956, "bridge=vmbr0,ip=10.0.0.151/24,hwaddr=bogus")
    assert config_warnings(me, me.nic("net0"), [broken]) == []


def test_mac_owners():
    _, cluster = _cluster()
    owners = mac_owners(cluster)
    assert [g.vmid for g in owners[SQUAT]] == [900]
    assert [g.vmid for g in owners[GUEST_MAC]] == [951]


def _conflict(kind, mac=SQUAT):
    return acd.Conflict(key="net0", ip="10.0.0.151", mac=mac, kind=kind, vlan=None, at=0.01)


def describe(mac):
    return None, "vendor unknown, locally administered"


def test_wire_finding_reply_unknown_device():
    f = wire_finding(_conflict("reply"), {}, describe)
    assert (f.source, f.mac, f.vendor) == ("arp", SQUAT, None)
    assert f.line == f"is in use by {SQUAT} (vendor unknown, locally administered)"
    assert f.detail == f"{SQUAT} answered our probe"


def test_wire_finding_names_the_owning_guest():
    _, cluster = _cluster()
    f = wire_finding(_conflict("announcement"), mac_owners(cluster), lambda m: ("Acme", "Acme"))
    assert f.vendor == "Acme"
    assert f.line == f"is in use by {SQUAT} (Acme, the MAC of CT 900 (base-template) on node pve3)"
    assert "announced this address" in f.detail and "CT 900" in f.detail


def test_wire_finding_probe_and_same_mac():
    p = wire_finding(_conflict("probe"), {}, describe)
    assert p.line.startswith(f"is being claimed right now by {SQUAT}") and "probing" in p.line
    s = wire_finding(_conflict("same-mac", GUEST_MAC), {}, describe)
    assert s.line == f"answers from this guest's own MAC {GUEST_MAC}: another copy of this guest is up"


# -- run_check with a fake wire -----------------------------------------------

class FakeWire:
    """Replays squatters: on each probe for an address in `squatters`, queue their answer.

    squatters: ip -> (mac, kind, vlan) with kind "reply" or "announce"; vlan is the VLAN the
    squatter lives in (answers only probes in that VLAN; answer arrives with aux_vlan as the
    kernel reports it). receive() advances the fake clock instead of waiting.
    """

    def __init__(self, clock, squatters=(), fail_send=None, noise=()):
        self.clock = clock
        self.squatters = dict(squatters)
        self.fail_send = fail_send
        self.noise = list(noise)
        self.sent = []
        self.inbox = []
        self.closed = False
        self.ifaces = None

    def __call__(self, ifaces):            # wire_factory
        self.ifaces = set(ifaces)
        return self

    def send(self, ifname, frame):
        if self.fail_send:
            raise WireError(self.fail_send, f"sending on {ifname} failed: Network is down")
        self.sent.append((ifname, frame))
        p = arp.parse(frame)
        assert p is not None and p.is_probe
        if p.target_ip in self.squatters:
            mac, kind, vlan = self.squatters[p.target_ip]
            if p.vlan != vlan:
                return
            if kind == "reply":
                ans = arp.build_reply(mac, p.target_ip, p.sender_mac, "0.0.0.0")
            else:
                ans = arp.build_announcement(mac, p.target_ip)
            self.inbox.append((ifname, ans, vlan))

    def receive(self, timeout):
        self.calls = getattr(self, "calls", 0) + 1
        assert self.calls < 1000, "probe loop makes no progress on a simulated clock"
        out = self.noise + self.inbox
        self.noise, self.inbox = [], []
        self.clock.now += timeout if not out else 0.001
        return out

    def close(self):
        self.closed = True


FACTS = facts(link("vmbr0", BR0), link("vmbr1", BR1, vf=True))    # vmbr1 is in every VLAN itself


def run(guests, wire, clock, cluster=None, **opt):
    opt.setdefault("timeout", 900)
    return run_check(guests, S, Options(**opt), facts=FACTS, wire_factory=wire, describe=describe,
                     load_cluster=(lambda: cluster) if cluster is not None else None)


def test_run_check_conflict_found(clock):
    g = ct(951, f"bridge=vmbr0,hwaddr={GUEST_MAC},ip=10.0.0.151/24")
    wire = FakeWire(clock, {"10.0.0.151": (SQUAT, "reply", None)})
    rep = run([g], wire, clock)
    assert rep.verdict == "conflict" and rep.exit_code == 1
    n = rep.guests[0].nics[0]
    assert n.verdict == "conflict" and [c.mac for c in n.conflicts] == [SQUAT]
    assert n.conflicts[0].line == f"is in use by {SQUAT} (vendor unknown, locally administered)"
    assert len(wire.sent) == 1 and wire.closed        # stopped at the first answer, no waiting
    assert wire.ifaces == {"vmbr0"}
    assert clock.now - 5000.0 < 0.9


def test_run_check_clear(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24")
    wire = FakeWire(clock)
    rep = run([g], wire, clock)
    n = rep.guests[0].nics[0]
    assert rep.verdict == "clear" and rep.exit_code == 0
    assert n.verdict == "clear" and n.conflicts == []
    assert n.note.endswith(", 3 probes") and n.note.startswith("no answer in ")
    assert [i for i, _ in wire.sent] == ["vmbr0"] * 3
    for _, f in wire.sent:
        p = arp.parse(f)
        assert (p.sender_mac, p.sender_ip, p.target_ip, p.vlan) == (BR0, "0.0.0.0", "10.0.0.151", None)
    assert wire.closed


def test_run_check_send_failure_is_error_never_clear(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24", "bridge=vmbr0,ip=10.0.0.152/24")
    wire = FakeWire(clock, fail_send=errno.ENETDOWN)
    rep = run([g], wire, clock)
    assert [n.verdict for n in rep.guests[0].nics] == ["error", "error"]
    assert rep.verdict == "error" and rep.exit_code == 3
    assert "could not probe" in rep.guests[0].nics[0].note
    assert wire.closed


class LossyWire(FakeWire):
    """A FakeWire whose kernel dropped frames on some interfaces (a receive buffer overflow)."""

    def __init__(self, clock, lost, **kw):
        super().__init__(clock, **kw)
        self.lost = lost

    def dropped(self):
        return dict(self.lost)


def test_run_check_frames_lost_and_nothing_heard_is_could_not_check_never_clear(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24", "bridge=vmbr1,ip=10.0.1.151/24")
    rep = run([g], LossyWire(clock, {"vmbr0": 37, "vmbr1": 0}), clock)
    n0, n1 = rep.guests[0].nics
    assert n0.verdict == "error" and rep.exit_code == 3
    assert "dropped 37 received frames on vmbr0" in n0.note and "proves nothing" in n0.note
    assert n1.verdict == "clear"                  # no loss on vmbr1: its silence stands


def test_run_check_frames_lost_but_the_holder_heard_is_a_conflict(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24")
    wire = LossyWire(clock, {"vmbr0": 5000}, squatters={"10.0.0.151": (SQUAT, "reply", None)})
    rep = run([g], wire, clock)
    assert rep.verdict == "conflict" and [c.mac for c in rep.guests[0].nics[0].conflicts] == [SQUAT]


def test_run_check_wire_cannot_open_is_error(clock):
    def factory(ifaces):
        raise WireError(errno.EPERM, "raw sockets need root (CAP_NET_RAW)")
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24")
    rep = run_check([g], S, Options(timeout=900), facts=FACTS, wire_factory=factory, describe=describe)
    n = rep.guests[0].nics[0]
    assert n.verdict == "error" and "CAP_NET_RAW" in n.note


def test_run_check_host_address_needs_no_wire(clock):
    def factory(ifaces):
        raise AssertionError("no wire needed")
    g = ct(951, "bridge=vmbr0,ip=10.0.0.2/24")
    f = facts(link("vmbr0", BR0), local_ips={"10.0.0.2"})
    rep = run_check([g], S, Options(timeout=900), facts=f, wire_factory=factory, describe=describe)
    assert rep.verdict == "conflict" and rep.guests[0].nics[0].conflicts[0].source == "host"


def test_run_check_vlan_squatter(clock):
    g = ct(951, "bridge=vmbr1,ip=192.168.50.151/24,tag=20")
    same = FakeWire(clock, {"192.168.50.151": (SQUAT, "reply", 20)})
    assert run([g], same, clock).verdict == "conflict"
    assert arp.parse(same.sent[0][1]).vlan == 20
    other = FakeWire(clock, {"192.168.50.151": (SQUAT, "reply", 30)})
    assert run([g], other, clock).verdict == "clear"


def test_run_check_untagged_squatter_on_other_vlan_ignored(clock):
    g = ct(951, "bridge=vmbr1,ip=192.168.50.151/24,tag=20")
    wire = FakeWire(clock, noise=[("vmbr1", arp.build_reply(SQUAT, "192.168.50.151", BR1, "0.0.0.0"), None)])
    assert run([g], wire, clock).verdict == "clear"


def test_run_check_conflict_on_net1_with_all_nics(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24", "bridge=vmbr0,ip=10.0.0.152/24")
    wire = FakeWire(clock, {"10.0.0.152": (SQUAT, "announce", None)})
    rep = run([g], wire, clock, stop_on_first=False)
    assert [n.verdict for n in rep.guests[0].nics] == ["clear", "conflict"]
    assert "announced" in rep.guests[0].nics[1].conflicts[0].detail


def test_run_check_stop_on_first_leaves_others_unfinished(clock):
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24", "bridge=vmbr0,ip=10.0.0.152/24")
    wire = FakeWire(clock, {"10.0.0.152": (SQUAT, "reply", None)})
    rep = run([g], wire, clock)
    n0, n1 = rep.guests[0].nics
    assert n1.verdict == "conflict"
    assert n0.verdict == "skipped" and "first conflict" in n0.note      # never "clear"
    assert rep.verdict == "conflict"


def test_run_check_own_mac_copy_and_attribution(clock):
    g = ct(951, f"bridge=vmbr0,hwaddr={GUEST_MAC},ip=10.0.0.151/24")
    wire = FakeWire(clock, {"10.0.0.151": (GUEST_MAC, "reply", None)})
    rep = run([g], wire, clock)
    c = rep.guests[0].nics[0].conflicts[0]
    assert "another copy of this guest" in c.line


def test_run_check_config_warning_and_owner_from_cluster(clock):
    me = ct(951, "bridge=vmbr0,ip=10.0.0.151/24")
    other = ct(952, f"bridge=vmbr0,hwaddr={SQUAT},ip=10.0.0.151/24", name="rogue", node="pve2")
    wire = FakeWire(clock, {"10.0.0.151": (SQUAT, "reply", None)})
    rep = run([me], wire, clock, cluster=[me, other])
    n = rep.guests[0].nics[0]
    assert [w.vmid for w in n.warnings] == [952] and n.warnings[0].node == "pve2"
    assert "the MAC of CT 952 (rogue) on node pve2" in n.conflicts[0].line


def test_run_check_cluster_loader_failure_is_a_note(clock):
    def boom():
        raise OSError("pmxcfs not mounted")
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24")
    rep = run_check([g], S, Options(timeout=900), facts=FACTS, wire_factory=FakeWire(clock),
                    describe=describe, load_cluster=boom)
    assert rep.verdict == "clear"
    assert any("pmxcfs not mounted" in x for x in rep.guests[0].notes)


def test_run_check_malformed_noise_is_harmless(clock):
    junk = [("vmbr0", b"\x00" * 5, None), ("vmbr0", b"\xff" * 60, None), ("vmbr0", b"", 7)]
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24")
    assert run([g], FakeWire(clock, noise=junk), clock).verdict == "clear"


def test_run_check_pending_note_and_nic_less_guest(clock):
    text = ("hostname: p\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.151/24\n[pve:pending]\n"
            "net0: name=eth0,bridge=vmbr0,ip=10.0.0.160/24\n")
    g = parse_config(text, 951, with_pending=True)
    empty = parse_config("hostname: empty\n", 960)
    rep = run([g, empty], FakeWire(clock), clock)
    assert rep.guests[0].nics[0].ip == "10.0.0.160"
    assert any("pending network changes" in x for x in rep.guests[0].notes)
    assert rep.guests[1].verdict == "skipped" and "has no network interfaces" in rep.guests[1].notes


def test_run_check_groups_by_guest_timeout(clock):
    s = parse_settings("[phoenix-hook]\nnode = pve1\nprobe_timeout_ms = 900\n[guest:952]\nprobe_timeout_ms = 300\n")
    wires = []

    def factory(ifaces):
        w = FakeWire(clock)
        wires.append(w)
        return w
    gs = [ct(951, "bridge=vmbr0,ip=10.0.0.151/24"), ct(952, "bridge=vmbr0,ip=10.0.0.152/24")]
    rep = run_check(gs, s, Options(), facts=FACTS, wire_factory=factory, describe=describe)
    assert len(wires) == 2 and rep.verdict == "clear"
    notes = sorted(g.nics[0].note for g in rep.guests)
    assert notes[0] != notes[1]                     # two windows, from two schedules


def test_interfaces_needed():
    gs = [ct(951, "bridge=vmbr0,ip=10.0.0.151/24", "bridge=vmbr1,ip=10.0.1.1/24,tag=20", "ip=dhcp")]
    assert check.interfaces_needed(gs) == {"vmbr0", "vmbr1", "vmbr1v20"}


def test_with_node_keeps_nics():
    g = with_node(ct(951, "bridge=vmbr0,ip=10.0.0.151/24"), "pve7")
    assert g.node == "pve7" and g.nics[0].address == "10.0.0.151"


def test_same_mac_answer_names_the_clone_not_the_guest_itself():
    me = Guest(vmid=951, name="me", node="pve1", nics=(Nic(key="net0", hwaddr=GUEST_MAC),))
    clone = Guest(vmid=957, name="clone", node="pve2", nics=(Nic(key="net0", hwaddr=GUEST_MAC),))
    owners = mac_owners([me, clone])
    f = wire_finding(_conflict("same-mac", GUEST_MAC), owners, lambda m: (None, "vendor unknown"), 951)
    assert "another copy of this guest is up (maybe the MAC of CT 957 (clone) on node pve2)" in f.line
    alone = wire_finding(_conflict("same-mac", GUEST_MAC), mac_owners([me]), lambda m: (None, "x"), 951)
    assert "CT 951" not in alone.line and "CT 951" not in alone.detail


def test_plan_vlan_aware_bridge_without_that_vlan_on_itself_probes_through_a_port():
    """A tagged probe the bridge's own ingress filter drops would look 'free': the probe goes
    through a temporary port in VLAN 20 instead, untagged (net/probeport.py)."""
    g, n = nic0("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    f = facts(link("vmbr0", BR0, vf=True))
    missing = HostFacts(links=f.links, self_vlans={"vmbr0": {1: True, 30: False}})
    c = plan_nic(g, n, S, missing)
    assert (c.iface, c.via_port, c.tagged, c.vlan, c.rx_vlan) == ("vmbr0", True, False, 20, None)
    assert arp.parse(c.probe_frame()).vlan is None
    unknown = HostFacts(links=f.links, self_vlans={"vmbr0": None})
    assert "cannot read the VLANs of vmbr0" in plan_nic(g, n, S, unknown).note
    present = HostFacts(links=f.links, self_vlans={"vmbr0": {v: False for v in range(2, 4095)}})
    c = plan_nic(g, n, S, present)
    assert c.tagged and c.rx_vlan == 20
    # VLAN 20 "Egress Untagged" on the bridge itself: sent tagged, answers arrive untagged
    untagged = HostFacts(links=f.links, self_vlans={"vmbr0": {20: True}})
    c = plan_nic(g, n, S, untagged)
    assert c.tagged and arp.parse(c.probe_frame()).vlan == 20 and c.rx_vlan is None


def test_parse_bridge_vlans_reads_ranges_and_only_the_bridge_itself():
    from phoenix_hook.net.hostnet import parse_bridge_vlans
    text = ('[{"ifname":"vmbr0","vlans":[{"vlan":1,"flags":["PVID","Egress Untagged"]},'
            '{"vlan":2,"vlanEnd":5}]},{"ifname":"eno1","vlans":[{"vlan":20}]}]')
    assert parse_bridge_vlans(text, "vmbr0") == {1: True, 2: False, 3: False, 4: False, 5: False}
    assert parse_bridge_vlans("[]", "vmbr0") == {}
    assert parse_bridge_vlans("not json", "vmbr0") is None
    assert parse_bridge_vlans('[{"ifname":"vmbr0","vlans":[{"vlan":"x"}]}]', "vmbr0") is None


def test_plan_uplinks_all_down_is_an_error_not_a_clear():
    """Power cut: the node is back, its switch is not. Only local guests would hear the probe."""
    from phoenix_hook.records import replace
    g, n = nic0("bridge=vmbr0,ip=10.0.0.151/24")
    down = replace(link("vmbr0", BR0), uplinks=(("eno1", False), ("eno2", False)))
    r = plan_nic(g, n, S, facts(down))
    assert r.verdict == "error" and "no uplink of vmbr0 has carrier (eno1, eno2)" in r.note
    one_up = replace(down, uplinks=(("eno1", False), ("eno2", True)))
    assert isinstance(plan_nic(g, n, S, facts(one_up)), acd.Candidate)
    internal = replace(link("vmbr0", BR0), uplinks=())          # guest ports only: probe them
    assert isinstance(plan_nic(g, n, S, facts(internal)), acd.Candidate)


def test_guest_ports_are_told_from_uplinks_by_pve_names():
    from phoenix_hook.net.hostnet import is_guest_port
    assert all(is_guest_port(p) for p in ("veth951i0", "tap120i1", "fwpr951p0", "fwln120i0"))
    assert not any(is_guest_port(p) for p in ("eno1", "bond0", "enp3s0.20", "veth0", "vethabc", "tap0"))


def test_plan_8021ad_vlan_aware_bridge_is_an_error_not_a_wrong_vlan_probe():
    from phoenix_hook.records import replace
    g, n = nic0("bridge=vmbr0,ip=10.0.20.5/24,tag=20")
    qinq = replace(link("vmbr0", BR0, vf=True), vlan_protocol=0x88A8)
    r = plan_nic(g, n, S, facts(qinq))
    assert r.verdict == "error" and "802.1ad (vlan_protocol 0x88a8)" in r.note
    g, n = nic0("bridge=vmbr0,ip=10.0.0.5/24")                      # untagged NICs are fine
    assert isinstance(plan_nic(g, n, S, facts(qinq)), acd.Candidate)


def test_run_check_deadline_during_the_probe_is_an_error_not_a_clear(clock):
    """The probe loop itself stops at the deadline: the NIC could not be checked."""
    g = ct(951, "bridge=vmbr0,ip=10.0.0.151/24")
    rep = run([g], FakeWire(clock), clock, deadline=clock.now + 0.05)
    nic = rep.guests[0].nics[0]
    assert (nic.verdict, rep.exit_code) == ("error", 3)
    assert "deadline passed before probing finished" in nic.note

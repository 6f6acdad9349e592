"""The watch's pure parts: what is watched and where (targets), what a frame means (rules),
how often it is said (limits), the words (events), the metrics text and the [watch] settings.
No sockets, no sleeping: time is a parameter."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from phoenix_hook.net import arp, ndp
from phoenix_hook.net.hostnet import Link
from phoenix_hook.pve.guest import parse_config
from phoenix_hook.settings import Settings, SettingsError, WatchSettings, parse
from phoenix_hook.watch import channels, events, rules, targets
from phoenix_hook.watch.limits import CAPPED, REPEAT, SEND, AlertLimiter, Conflicts
from phoenix_hook.watch.monitor import probe_frame

GUEST_MAC = "52:54:00:67:89:b1"
GUEST_MAC2 = "bc:24:11:5e:2a:01"        # the same guest's second NIC
OTHER_GUEST_MAC = "52:54:00:67:89:b2"   # CT 952
SQUAT = "16:0d:a0:c0:b9:1b"
HOST_MAC = "02:11:22:33:44:55"
BR_MAC = "02:00:00:00:00:aa"


def ct(vmid, text, node="pve1"):
    return parse_config(text, vmid, "lxc", node)


GUESTS = [
    ct(951, f"hostname: web\nnet0: name=eth0,bridge=vmbr0,hwaddr={GUEST_MAC.upper()},ip=10.0.0.151/24,"
            f"ip6=fd00::151/64\nnet1: name=eth1,bridge=vmbr0,hwaddr={GUEST_MAC2},ip=10.0.20.151/24,tag=20\n"),
    ct(952, f"hostname: db\nnet0: name=eth0,bridge=vmbr0,hwaddr={OTHER_GUEST_MAC},ip=10.0.0.152/24\n", "pve2"),
    ct(953, "hostname: dyn\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:00:03,ip=dhcp,ip6=auto\n"),
    ct(954, "hostname: tpl\ntemplate: 1\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:00:04,ip=10.0.0.154/24\n"),
    ct(955, "hostname: vip\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:00:05,ip=10.0.0.250/24\n"),
    ct(956, "hostname: nomac\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.156/24\n"),
]


def link(name, vlan_filtering=False, mac=BR_MAC):
    return Link(name=name, mac=mac, up=True, noarp=False, carrier=True, is_bridge=True,
                vlan_filtering=vlan_filtering)


@pytest.fixture
def wset():
    return targets.build(GUESTS, ignored=lambda ip: ip == "10.0.0.250")


@pytest.fixture
def listen(wset):
    return targets.listen_plan(wset.segments, {"vmbr0": link("vmbr0")}, {})


def judge(frame, wset, listen, iface="vmbr0", aux_vlan=None, host_macs=frozenset({HOST_MAC, BR_MAC}),
          ignore_macs=frozenset()):
    return rules.judge(frame, aux_vlan, iface, listen, wset, host_macs, ignore_macs)


def events_of(sightings):
    return [(s.kind, s.how, s.watched.vmid, s.watched.ip, s.mac) for s in sightings if s.kind != rules.OWN]


# -- what is watched -----------------------------------------------------------------
def test_watch_set_holds_every_static_address_and_says_what_it_leaves_out(wset):
    got = sorted((w.id, w.nic, w.family, w.ip, w.bridge, w.vlan, w.node) for w in wset.addresses)
    assert got == [("lxc/951", "net0", 4, "10.0.0.151", "vmbr0", None, "pve1"),
                   ("lxc/951", "net0", 6, "fd00::151", "vmbr0", None, "pve1"),
                   ("lxc/951", "net1", 4, "10.0.20.151", "vmbr0", 20, "pve1"),
                   ("lxc/952", "net0", 4, "10.0.0.152", "vmbr0", None, "pve2")]
    w = wset.lookup("vmbr0", None, 4, "10.0.0.151")[0]
    assert w.guest_macs == {GUEST_MAC, GUEST_MAC2} and w.guest_mac == GUEST_MAC
    assert w.describe() == "CT 951 (web) net0 10.0.0.151 on vmbr0"
    assert any("10.0.0.156 has no MAC" in n for n in wset.notes)       # cannot tell its own frames
    assert wset.mac_owners[OTHER_GUEST_MAC] == "CT 952 (db) on node pve2"
    assert wset.guests == 2 and wset.ips(6) == {"fd00::151"}


def test_listen_plan_traditional_bridge_with_and_without_vmbr0v20(wset):
    plain = targets.listen_plan(wset.segments, {"vmbr0": link("vmbr0"), "vmbr0v20": None}, {})
    assert plain.ifaces == ("vmbr0",)
    assert plain.rx[("vmbr0", 20)] == (("vmbr0", 20),) and plain.rx[("vmbr0", None)] == (("vmbr0", None),)
    assert plain.send[("vmbr0", 20)] == ("vmbr0", 20)
    pve = targets.listen_plan(wset.segments, {"vmbr0": link("vmbr0"), "vmbr0v20": link("vmbr0v20")}, {})
    assert pve.ifaces == ("vmbr0", "vmbr0v20")
    assert pve.rx[("vmbr0v20", None)] == (("vmbr0", 20),)
    assert pve.send[("vmbr0", 20)] == ("vmbr0v20", None)
    missing = targets.listen_plan(wset.segments, {"vmbr0": None}, {})
    assert missing.ifaces == () and missing.missing == ("vmbr0",)


def test_listen_plan_vlan_aware_bridge():
    ws = targets.build([ct(960, f"net0: name=eth0,bridge=vmbr0,hwaddr={GUEST_MAC},ip=10.0.30.1/24,tag=30\n"
                                f"net1: name=eth1,bridge=vmbr0,hwaddr={GUEST_MAC2},ip=10.0.1.1/24,tag=1\n"
                                f"net2: name=eth2,bridge=vmbr0,hwaddr=52:54:00:00:00:07,ip=10.0.40.1/24,tag=40\n")])
    links = {"vmbr0": link("vmbr0", vlan_filtering=True)}
    p = targets.listen_plan(ws.segments, links, {"vmbr0": {1: True, 30: False}})
    assert p.rx[("vmbr0", 30)] == (("vmbr0", 30),)
    assert ("vmbr0", 1) in p.rx[("vmbr0", None)]            # VID 1 is egress-untagged on the bridge
    assert p.send[("vmbr0", 30)] == ("vmbr0", 30)
    assert p.send[("vmbr0", 40)] is None                      # not on the bridge itself: not from it...
    assert p.ports == {("vmbr0", 40): ("vmbr0", 40)}          # ...but through a temporary port in VLAN 40
    assert ("vmbr0", 30) not in p.ports and ("vmbr0", 1) not in p.ports


# -- events ----------------------------------------------------------------------------
@pytest.mark.parametrize("frame, how", [
    (arp.build_announcement(SQUAT, "10.0.0.151"), "announcement"),
    (arp.build_reply(SQUAT, "10.0.0.151", "02:00:00:00:00:01", "10.0.0.1"), "reply"),
    (arp.build_request(SQUAT, "10.0.0.151", "10.0.0.1"), "request"),
], ids=["announcement", "reply", "request"])
def test_ipv4_conflicts(frame, how, wset, listen):
    assert events_of(judge(frame, wset, listen)) == [("conflict", how, 951, "10.0.0.151", SQUAT)]


def test_ipv4_claim(wset, listen):
    assert events_of(judge(arp.build_probe(SQUAT, "10.0.0.151"), wset, listen)) == \
        [("claim", "probe", 951, "10.0.0.151", SQUAT)]


def test_ipv6_conflicts_and_claim(wset, listen):
    na = ndp.build_advert(SQUAT, "fd00::151")
    dad = ndp.build_dad_probe(SQUAT, "fd00::151")
    ns_from = ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:00:01", ip_src="fd00::151",
                        ip_dst="ff02::1:ff00:1", target="fd00::1", src_lladdr=SQUAT)
    assert events_of(judge(na, wset, listen)) == [("conflict", "advertisement", 951, "fd00::151", SQUAT)]
    assert events_of(judge(dad, wset, listen)) == [("claim", "probe", 951, "fd00::151", SQUAT)]
    assert events_of(judge(ns_from, wset, listen)) == [("conflict", "solicitation", 951, "fd00::151", SQUAT)]


def test_tagged_vlan_is_its_own_segment(wset, listen):
    tagged = arp.build_announcement(SQUAT, "10.0.20.151", vlan=20)
    assert events_of(judge(tagged, wset, listen)) == [("conflict", "announcement", 951, "10.0.20.151", SQUAT)]
    # the same frame with the tag in PACKET_AUXDATA (the kernel moved it out)
    untagged = arp.build_announcement(SQUAT, "10.0.20.151")
    assert events_of(judge(untagged, wset, listen, aux_vlan=20)) == events_of(judge(tagged, wset, listen))
    # the address of the VLAN 20 guest, heard untagged or in VLAN 30: another segment, nothing
    assert judge(untagged, wset, listen) == []
    assert judge(arp.build_announcement(SQUAT, "10.0.20.151", vlan=30), wset, listen) == []
    # an untagged guest's address heard in VLAN 20: nothing either
    assert judge(arp.build_announcement(SQUAT, "10.0.0.151", vlan=20), wset, listen) == []


def test_another_guests_mac_is_a_conflict_naming_that_guest(wset, listen):
    got = judge(arp.build_announcement(OTHER_GUEST_MAC, "10.0.0.151"), wset, listen)
    assert events_of(got) == [("conflict", "announcement", 951, "10.0.0.151", OTHER_GUEST_MAC)]
    assert wset.mac_owners[got[0].mac].startswith("CT 952")


@pytest.mark.parametrize("frame", [
    arp.build_announcement(GUEST_MAC, "10.0.0.151"),            # the guest itself
    arp.build_announcement(GUEST_MAC2, "10.0.0.151"),           # its other NIC (ARP flux)
    arp.build_probe(GUEST_MAC, "10.0.0.151"),                   # its own RFC 5227 probe at boot
    ndp.build_dad_probe(GUEST_MAC, "fd00::151"),                # its own DAD
    ndp.build_advert(GUEST_MAC, "fd00::151"),
    arp.build_announcement(OTHER_GUEST_MAC, "10.0.0.152"),      # CT 952 on node pve2 (migrated or not)
], ids=["garp", "other-nic", "probe", "dad", "na", "other-node"])
def test_a_guests_own_macs_are_never_an_event(frame, wset, listen):
    got = judge(frame, wset, listen)
    assert got and all(s.kind == rules.OWN for s in got)


@pytest.mark.parametrize("frame", [
    arp.build_announcement(HOST_MAC, "10.0.0.151"),             # this host's MACs
    arp.build_reply(BR_MAC, "10.0.0.151", SQUAT, "10.0.0.9"),
    arp.build_announcement(SQUAT, "10.0.0.250"),                # in ignore
    arp.build_announcement(SQUAT, "10.0.0.153"),                # a dhcp guest: no static address
    arp.build_announcement(SQUAT, "10.0.0.154"),                # a template
    arp.build_announcement(SQUAT, "10.0.0.156"),                # no MAC in its config
    arp.build_announcement(SQUAT, "10.0.0.99"),                 # nobody's
    arp.build_request(SQUAT, "10.0.0.9", "10.0.0.151"),         # someone asking for the guest: normal
    ndp.build(ndp.ND_NEIGHBOR_SOLICIT, eth_src=SQUAT, eth_dst="33:33:ff:00:01:51", ip_src="fd00::9",
              ip_dst="ff02::1:ff00:151", target="fd00::151", src_lladdr=SQUAT),
], ids=["host-mac", "bridge-mac", "ignored", "dhcp-guest", "template", "no-mac", "nobodys", "who-has",
        "ns-for"])
def test_non_events(frame, wset, listen):
    assert judge(frame, wset, listen) == []


def test_rarp_and_ignore_macs_are_never_an_event(wset, listen):
    garp = arp.build_announcement(SQUAT, "10.0.0.151")
    rarp = garp[:12] + b"\x80\x35" + garp[14:20] + b"\x00\x03" + garp[22:]     # QEMU's RARP after migration
    assert judge(rarp, wset, listen) == []
    assert judge(garp, wset, listen, ignore_macs=frozenset({SQUAT})) == []
    assert judge(garp, wset, listen, iface="vmbr1") == []                       # not a watched interface


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(0, 4095)))
def test_garbage_never_crashes_nor_makes_an_event_unless_it_is_arp_or_nd(data, vlan):
    wset = targets.build(GUESTS)
    listen = targets.listen_plan(wset.segments, {"vmbr0": link("vmbr0")}, {})
    for s in rules.judge(data, vlan, "vmbr0", listen, wset, frozenset(), frozenset()):
        assert rules.read(data, vlan) is not None and s.watched.ip == rules.read(data, vlan)[1]


# -- limits ----------------------------------------------------------------------------
def test_once_per_address_and_mac_per_interval():
    lim = AlertLimiter(interval_s=3600, per_minute=10)
    k = ("vmbr0", None, 4, "10.0.0.151", SQUAT)
    assert lim.check(k, "conflict", 0.0) == SEND
    assert lim.check(k, "conflict", 10.0) == REPEAT
    assert lim.check(k, "conflict", 3599.0) == REPEAT
    assert lim.check(k, "conflict", 3600.0) == SEND
    other = k[:4] + ("02:00:00:00:00:09",)
    assert lim.check(other, "conflict", 3600.5) == SEND


def test_a_claim_then_a_conflict_by_the_same_mac_says_both_the_other_way_once():
    lim = AlertLimiter(interval_s=3600, per_minute=10)
    k = ("vmbr0", None, 4, "10.0.0.151", SQUAT)
    assert [lim.check(k, kind, t) for t, kind in
            [(0, "claim"), (1, "claim"), (2, "conflict"), (3, "conflict"), (4, "claim")]] == \
        [SEND, REPEAT, SEND, REPEAT, REPEAT]


def test_at_most_n_per_minute_then_one_summary_with_the_count():
    lim = AlertLimiter(interval_s=3600, per_minute=10)
    got = [lim.check(("vmbr0", None, 4, "10.0.0.151", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"),
                     "conflict", i * 0.001) for i in range(10000)]
    assert got.count(SEND) == 10 and got.count(CAPPED) == 9990
    assert lim.summary(30.0) == 0                         # the minute is not over
    assert lim.summary(60.0) == 9990                      # said once ...
    assert lim.summary(61.0) == 0                         # ... and not again
    assert len(lim) <= lim.max_keys                       # bounded memory
    # a new minute: alerts flow again
    assert lim.check(("vmbr0", None, 4, "10.0.0.152", SQUAT), "conflict", 61.0) == SEND


def test_a_held_back_conflict_is_said_in_a_later_minute():
    lim = AlertLimiter(interval_s=3600, per_minute=1)
    a, b = ("x", None, 4, "10.0.0.1", SQUAT), ("x", None, 4, "10.0.0.2", SQUAT)
    assert lim.check(a, "conflict", 0) == SEND
    assert lim.check(b, "conflict", 1) == CAPPED
    assert lim.check(b, "conflict", 2) == REPEAT          # counted once in its minute
    assert lim.flush() == 1
    assert lim.check(b, "conflict", 61) == SEND


@hsettings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["claim", "conflict"]),
                          st.floats(0, 1000, allow_nan=False)), max_size=300),
       st.integers(1, 20))
def test_never_more_than_the_cap_in_any_minute_window(items, cap):
    lim = AlertLimiter(interval_s=600, per_minute=cap, max_keys=16)
    sent = []
    for key, kind, t in sorted(items, key=lambda x: x[2]):
        if lim.check(("b", None, 4, f"10.0.0.{key}", SQUAT), kind, t) == SEND:
            sent.append(t)
    # windows start at an alert and last 60 s: no 60 s starting at a send holds more than cap
    for t in sent:
        assert sum(1 for u in sent if t <= u < t + 60) <= cap
    assert len(lim) <= 16


def test_conflicts_are_rechecked_and_resolved_when_silent():
    w = targets.build(GUESTS).lookup("vmbr0", None, 4, "10.0.0.151")[0]
    c = Conflicts(verify_s=60)
    key = ("vmbr0", None, 4, "10.0.0.151", SQUAT)
    assert c.seen(key, w, 0.0) is not None
    assert c.active() == {("lxc/951", "10.0.0.151")}
    assert c.due(59.0) == [] and c.wakeup() == 60.0
    assert [o.mac for o in c.due(60.0)] == [SQUAT]          # round 1: first probe
    assert c.due(60.2) == [] and len(c.due(60.5)) == 1 and len(c.due(61.0)) == 1 and c.due(61.4) == []
    c.seen(key, w, 60.3)                                    # it answered
    assert c.resolved(62.0) == [] and key in c.open
    assert c.due(121.0) == [] and len(c.due(122.0)) == 1     # next round verify_s later
    assert [o.mac for o in c.resolved(124.0)] == [SQUAT]     # silent through the round: resolved
    assert c.open == {} and c.active() == set()


def test_conflicts_are_bounded():
    w = targets.build(GUESTS).lookup("vmbr0", None, 4, "10.0.0.151")[0]
    c = Conflicts(verify_s=60, max_total=50, max_per_address=16)
    for i in range(1000):
        c.seen(("vmbr0", None, 4, "10.0.0.151", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"), w, 1.0)
    assert len(c.open) == 16 and c.untracked == 984


def test_a_conflict_that_cannot_be_probed_stays_open():
    w = targets.build(GUESTS).lookup("vmbr0", None, 4, "10.0.0.151")[0]
    c = Conflicts(verify_s=10)
    c.seen(("vmbr0", None, 4, "10.0.0.151", SQUAT), w, 0.0)
    assert c.due(10.0, can_probe=lambda o: False) == []
    assert c.resolved(100.0) == [] and len(c.open) == 1


def test_reprobe_frames_go_to_the_conflicting_mac_alone():
    f4 = arp.parse(probe_frame(4, "10.0.0.151", SQUAT, BR_MAC, 20))
    assert (f4.eth_dst, f4.sender_ip, f4.target_ip, f4.sender_mac, f4.vlan) == \
        (SQUAT, "0.0.0.0", "10.0.0.151", BR_MAC, 20)
    f6 = ndp.parse(probe_frame(6, "fd00::151", SQUAT, BR_MAC, None))
    assert f6.is_dad and f6.eth_dst == SQUAT and f6.target == "fd00::151"


# -- words -----------------------------------------------------------------------------
def rec(event="conflict", how="announcement", mac=SQUAT, node="pve1", running=True, vendor=None, owner=None):
    w = targets.build(GUESTS).lookup("vmbr0", 20, 4, "10.0.20.151")[0]
    w = targets.Watched(**{**w.__dict__, "node": node})
    return events.record(event, w, mac, how=how, vendor=vendor, mac_owner=owner, running=running,
                         watch_node="pve1", wall=1_700_000_000.0, since=1_699_999_000.0 if event == "resolved" else None)


def test_event_record_has_every_key_the_issue_lists():
    r = rec()
    for key in ("event", "time", "node", "vmid", "type", "name", "nic", "family", "ip", "guest_mac", "mac",
                "vendor", "bridge", "vlan", "guest_running"):
        assert key in r, key
    assert (r["vmid"], r["type"], r["id"], r["nic"], r["family"], r["vlan"], r["guest_running"]) == \
        (951, "lxc", "lxc/951", "net1", 4, 20, True)
    json.dumps(r)


def test_journal_lines_in_the_admins_words():
    assert events.journal(rec()) == (
        f"<3>conflict: CT 951 (web) net1 10.0.20.151 on vmbr0 VLAN 20 is in use by {SQUAT} (vendor unknown, "
        f"locally administered), which announced it (gratuitous ARP); CT 951 is running")
    assert events.journal(rec("claim", "probe", mac="00:1b:21:3a:4b:5c", vendor="Intel Corporate",
                              owner="CT 952 (db) on node pve2", node="pve2", running=False)) == (
        "<4>claim: CT 951 (web) net1 10.0.20.151 on vmbr0 VLAN 20 is being claimed by 00:1b:21:3a:4b:5c "
        "(Intel Corporate, the MAC of CT 952 (db) on node pve2), which is probing for it (ARP probe, "
        "RFC 5227); CT 951 lives on node pve2")
    assert events.journal(rec("resolved", None)).startswith(
        f"<5>resolved: CT 951 (web) net1 10.0.20.151 on vmbr0 VLAN 20: {SQUAT} (vendor unknown, locally "
        f"administered) no longer answers for it (in conflict since ")


def test_pve_notification_data_are_strings_and_fields_route_by_type_and_node():
    severity, data, fields = events.notification(rec(node="pve1"))
    assert severity == "error" and fields == {"type": "phoenix-hook", "hostname": "pve1"}
    assert all(isinstance(v, str) for v in data.values())
    assert data["title"] == "CT 951: 10.0.20.151 is in use by another device"
    assert (data["vlan"], data["guest_running"], data["vendor"]) == ("20", "yes", "unknown")
    # every name the shipped templates use is in the data
    import re
    for name in ("subject", "body"):
        text = (channels.TEMPLATE_DIR + f"/phoenix-hook-conflict-{name}.txt.hbs")
        used = set(re.findall(r"{{\s*([a-z_]+)\s*}}", open(text).read()))
        assert used and used <= set(data), used - set(data)


def test_metrics_text():
    rows = [("lxc/951", "10.0.0.151"), ("lxc/951", "fd00::151"), ("qemu/120", "10.0.0.120")]
    text = channels.render_metrics(rows, {("lxc/951", "10.0.0.151")}, {("lxc/951", "10.0.0.151"): 3},
                                   watched=3, frames={"ipv4": 7}, dropped=2, suppressed=5,
                                   last_reload=1700000000.5)
    lines = text.splitlines()
    assert 'phoenix_hook_conflict_active{id="lxc/951",ip="10.0.0.151"} 1' in lines
    assert 'phoenix_hook_conflict_active{id="qemu/120",ip="10.0.0.120"} 0' in lines
    assert 'phoenix_hook_conflicts_total{id="lxc/951",ip="10.0.0.151"} 3' in lines
    assert 'phoenix_hook_conflicts_total{id="lxc/951",ip="fd00::151"} 0' in lines
    assert "phoenix_hook_watched_addresses 3" in lines
    assert 'phoenix_hook_frames_total{family="ipv4"} 7' in lines
    assert 'phoenix_hook_frames_total{family="ipv6"} 0' in lines
    assert "phoenix_hook_last_reload_timestamp_seconds 1700000000.500" in lines
    assert "phoenix_hook_frames_dropped_total 2" in lines and "phoenix_hook_alerts_suppressed_total 5" in lines
    # each metric family once, TYPE before its samples, counters end in _total
    types = [l.split()[2:4] for l in lines if l.startswith("# TYPE")]
    assert len({n for n, _ in types}) == len(types)
    assert all(n.endswith("_total") == (t == "counter") for n, t in types)


def test_metrics_file_is_replaced_atomically(tmp_path):
    path = tmp_path / "phoenix-hook.prom"
    channels.write_atomically(str(path), "a 1\n")
    channels.write_atomically(str(path), "a 2\n")
    assert path.read_text() == "a 2\n" and [p.name for p in tmp_path.iterdir()] == ["phoenix-hook.prom"]


# -- settings --------------------------------------------------------------------------
def test_watch_settings_defaults_and_every_key():
    assert Settings().watch == WatchSettings() and Settings().announce is True
    s = parse("[phoenix-hook]\nannounce = false\n[watch]\nlog_file = /tmp/w.jsonl\nreload_s = 2\nverify_s = 5\n"
              "alert_interval_s = 0\nmax_alerts_per_minute = 3\nnotify = off\nwebhook_url = http://127.0.0.1:9/x\n"
              "webhook_timeout_s = 1.5\nmetrics_file = /tmp/m.prom\nignore_macs = 00:00:5E:00:01:0A, "
              "00-00-5e-00-01-0b\n", "c")
    w = s.watch
    assert s.announce is False
    assert (w.log_file, w.reload_s, w.verify_s, w.alert_interval_s, w.max_alerts_per_minute, w.notify) == \
        ("/tmp/w.jsonl", 2.0, 5.0, 0.0, 3, "off")
    assert (w.webhook_url, w.webhook_timeout_s, w.metrics_file) == ("http://127.0.0.1:9/x", 1.5, "/tmp/m.prom")
    assert w.ignore_macs == ("00:00:5e:00:01:0a", "00:00:5e:00:01:0b")


@pytest.mark.parametrize("body, words", [
    ("reload_s = 0", "[watch] reload_s = '0' is not valid; use seconds from 1 to 3600"),
    ("verify_s = soon", "verify_s = 'soon' is not valid"),
    ("max_alerts_per_minute = 0", "a whole number from 1 to 10000"),
    ("notify = mail", "use auto | pve | off"),
    ("webhook_url = ftp://x", "an http:// or https:// URL"),
    ("webhook_url = http://", "an http:// or https:// URL"),
    ("metrics_file = node.prom", "an absolute file path"),
    ("log_file = /var/log/", "an absolute file path"),
    ("ignore_macs = 00:00:5e:00:01", "MAC addresses like"),
    ("colour = red", "unknown key 'colour' in [watch]"),
])
def test_bad_watch_settings_are_one_clear_line(body, words):
    with pytest.raises(SettingsError) as e:
        parse(f"[watch]\n{body}\n", "/etc/phoenix-hook/phoenix-hook.conf")
    assert words in str(e.value) and "/etc/phoenix-hook/phoenix-hook.conf" in str(e.value)


def test_bad_announce_value():
    with pytest.raises(SettingsError) as e:
        parse("[phoenix-hook]\nannounce = maybe\n", "c")
    assert "announce = 'maybe' is not valid; use true or false" in str(e.value)


# -- the webhook channel, against a receiver on loopback --------------------------------
class _Receiver:
    """An HTTP server on 127.0.0.1 answering with the given status codes in turn."""

    def __init__(self, codes):
        import http.server
        import threading
        self.codes, self.bodies = list(codes), []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(outer.codes.pop(0) if outer.codes else 204)
                self.end_headers()

            def log_message(self, *a):
                pass
        self.srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_webhook_retries_with_backoff_then_delivers():
    r = _Receiver([500, 503, 204])
    said = []
    hook = channels.Webhook(channels.Once(lambda t, p: said.append(t)), r.url, timeout=2, retries=3, backoff=0.01)
    try:
        hook.handle({"event": "conflict", "ip": "10.0.0.151"})
        assert [json.loads(b) for b in r.bodies] == [{"event": "conflict", "ip": "10.0.0.151"}] * 3
    finally:
        hook.stop()
        r.close()


def test_webhook_gives_up_on_a_client_error_and_after_its_retries():
    r = _Receiver([404])
    hook = channels.Webhook(channels.Once(lambda t, p: None), r.url, timeout=2, retries=3, backoff=0.01)
    try:
        with pytest.raises(RuntimeError, match=r"HTTP 404\) after 4 tries"):
            hook.handle({"event": "claim"})
        assert len(r.bodies) == 1                       # a 404 is not retried
        r.codes = [500] * 10
        with pytest.raises(RuntimeError, match="HTTP 500"):
            hook.handle({"event": "claim"})
        assert len(r.bodies) == 1 + 4                   # first try + 3 retries
    finally:
        hook.stop()
        r.close()


def test_a_full_queue_drops_and_says_so_once_never_blocks():
    import threading
    said = []
    gate = threading.Event()

    class Slow(channels.Worker):
        name = "slow"

        def handle(self, item):
            gate.wait(5)
    w = Slow(channels.Once(lambda t, p: said.append(t)), size=3)
    try:
        results = [w.submit(i) for i in range(20)]       # returns at once every time
        assert results.count(False) >= 16 and w.dropped == results.count(False)
        assert len(said) == 1 and "dropping new ones" in said[0]
    finally:
        gate.set()
        w.stop()


def test_phoenix_hook_settings_shows_the_watch_section_in_force(tmp_path, capsys):
    from phoenix_hook.cli import main as cli
    conf = tmp_path / "p.conf"
    conf.write_text("[phoenix-hook]\nannounce = false\n[watch]\nverify_s = 5\nnotify = bogus\n")
    conf.chmod(0o644)
    cli.main(["settings", "--json", "--config", str(conf)])
    rows = {(r["section"], r["key"]): r for r in json.loads(capsys.readouterr().out)["settings"]}
    assert rows[("phoenix-hook", "announce")]["value"] == "false"
    assert rows[("watch", "verify_s")] == {"section": "watch", "key": "verify_s", "value": "5", "default": False}
    assert rows[("watch", "notify")]["value"] == "auto" and rows[("watch", "notify")]["mistake"] is True
    assert rows[("watch", "reload_s")]["default"] is True

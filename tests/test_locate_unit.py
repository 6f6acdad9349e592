"""checks/locate.py and net/fdb.py without a wire: owners, where to probe, where a MAC sits, verdicts."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from phoenix_hook.checks import leasefiles, locate
from phoenix_hook.net import acd, fdb
from phoenix_hook.pve.guest import parse_config

# `bridge -j fdb show br vmbr0` on a bridge with a container port and an uplink (iproute2 6.1)
FDB_JSON = json.dumps([
    {"mac": "33:33:00:00:00:01", "ifname": "vmbr0", "flags": ["self"], "state": "permanent"},
    {"mac": "52:54:00:67:89:b1", "ifname": "veth951i0", "flags": [], "master": "vmbr0", "state": ""},
    {"mac": "06:23:6e:ed:7d:aa", "ifname": "veth951i0", "flags": [], "master": "vmbr0", "state": "permanent"},
    {"mac": "33:33:00:00:00:01", "ifname": "veth951i0", "flags": ["self"], "state": "permanent"},
    {"mac": "3c:52:82:11:22:33", "ifname": "eno1", "flags": [], "master": "vmbr0", "state": ""},
    {"mac": "3c:52:82:11:22:33", "ifname": "eno1", "vlan": 20, "flags": [], "master": "vmbr0", "state": ""},
    {"mac": "52:54:00:67:89:b5", "ifname": "fwpr955p1", "vlan": 20, "flags": [], "master": "vmbr0", "state": "stale"},
    {"mac": "bc:24:11:00:01:20", "ifname": "tap120i0", "flags": [], "master": "vmbr1", "state": ""},
])


def test_fdb_keeps_the_bridges_entries_only():
    entries = fdb.parse_fdb_json(FDB_JSON, "vmbr0")
    assert [(e.mac, e.port, e.vlan, e.permanent) for e in entries] == [
        ("52:54:00:67:89:b1", "veth951i0", None, False), ("06:23:6e:ed:7d:aa", "veth951i0", None, True),
        ("3c:52:82:11:22:33", "eno1", None, False), ("3c:52:82:11:22:33", "eno1", 20, False),
        ("52:54:00:67:89:b5", "fwpr955p1", 20, False)]
    assert fdb.port_of(entries, "3C:52:82:11:22:33", 20).vlan == 20
    assert fdb.port_of(entries, "3c:52:82:11:22:33", None).vlan is None
    assert fdb.port_of(entries, "bc:24:11:00:01:20") is None          # on vmbr1, not here


@pytest.mark.parametrize("name,want", [
    ("veth951i0", (951, "net0")), ("tap120i3", (120, "net3")), ("fwpr955p1", (955, "net1")),
    ("fwln952i0", (952, "net0")), ("eno1", None), ("bond0", None), ("eno1.20", None), ("vmbr0", None),
    ("veth951", None), ("tap120i", None), ("vethX1i0", None),
])
def test_pve_port_names(name, want):
    assert fdb.guest_port(name) == want


def test_place():
    entries = fdb.parse_fdb_json(FDB_JSON, "vmbr0")
    assert locate.place("52:54:00:67:89:b1", entries, None) == ("veth951i0", "guest", 951, "net0")
    assert locate.place("52:54:00:67:89:b5", entries, 20) == ("fwpr955p1", "guest", 955, "net1")
    assert locate.place("3c:52:82:11:22:33", entries, None) == ("eno1", "uplink", None, None)
    assert locate.place("06:23:6e:ed:7d:aa", entries, None) == ("veth951i0", "host", None, None)
    assert locate.place("02:00:00:00:00:01", entries, None) == (None, "unknown", None, None)
    assert locate.place("02:00:00:00:00:01", entries, None, frozenset({"02:00:00:00:00:01"}))[1] == "host"
    assert locate.place("02:00:00:00:00:01", None, None) == (None, "unknown", None, None)


@hsettings(max_examples=300)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
                    lambda c: st.one_of(st.lists(c, max_size=5), st.dictionaries(
                        st.sampled_from(["mac", "ifname", "master", "vlan", "flags", "state"]), c, max_size=6)),
                    max_leaves=25))
def test_fuzz_fdb(data):
    for e in fdb.parse_fdb_json(json.dumps(data), None):
        assert isinstance(e.port, str) and (e.vlan is None or 0 < e.vlan < 4095)
        locate.place(e.mac, [e], e.vlan)


@hsettings(max_examples=200)
@given(st.text(max_size=200))
def test_fuzz_fdb_text_and_port_names(text):
    fdb.parse_fdb_json(text, "vmbr0")
    fdb.guest_port(text)


# -- owners and where to probe -----------------------------------------------------------
def ct(vmid, net0, node="pve1", extra=""):
    return parse_config(f"hostname: ct{vmid}\nnet0: {net0}\n{extra}", vmid, "lxc", node)


GUESTS = [
    ct(957, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B7,ip=10.0.0.157/24,type=veth", node="pve2"),
    ct(955, "name=eth0,bridge=vmbr1,hwaddr=52:54:00:67:89:B5,ip=10.0.5.155/24,tag=20,type=veth"),
    ct(958, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B8,ip=10.0.0.157/24,type=veth"),
    ct(900, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:AA:BB:CC,ip=10.0.0.200/24,type=veth", extra="template: 1\n"),
    ct(956, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B6,ip6=fd00::156/64,type=veth"),
]


def test_owner_this_nodes_guest_first_templates_never():
    owners = locate.owners_of("10.0.0.157", GUESTS, "pve1")
    assert [(o.vmid, o.node) for o in owners] == [(958, "pve1"), (957, "pve2")]
    assert locate.owners_of("10.0.0.200", GUESTS, "pve1") == []
    [o] = locate.owners_of("fd00::156", GUESTS, "pve1")
    assert (o.vmid, o.mac, o.bridge) == (956, "52:54:00:67:89:b6", "vmbr0")


def test_owner_host_and_nodes():
    [o] = locate.owners_of("10.0.0.1", GUESTS, "pve1", host_addrs=[("10.0.0.1", "vmbr0", "02:00:00:00:00:01")])
    assert (o.type, o.node, o.nic, o.label) == ("node", "pve1", "vmbr0", "this host (pve1)")
    [o] = locate.owners_of("10.0.0.3", GUESTS, "pve1", nodes={"10.0.0.3": "pve2", "10.0.0.2": "pve1"})
    assert (o.type, o.node, o.mac, o.label) == ("node", "pve2", None, "node pve2")
    assert set(o.to_json()) == {"vmid", "type", "node", "nic", "name", "mac"}


def test_where_to_probe():
    bridges = {"vmbr0", "vmbr1", "vmbr1v30"}
    [owner] = locate.owners_of("10.0.5.155", GUESTS, "pve1")
    assert locate.where_to_probe("10.0.5.155", owner, (), bridges, GUESTS)[:2] == ("vmbr1", 20)
    host = [("10.0.0.1", 24, "vmbr0"), ("10.0.30.1", 24, "vmbr1v30"), ("192.168.9.1", 24, "eno2"),
            ("10.0.40.1", 24, "vmbr1.40")]
    assert locate.where_to_probe("10.0.0.77", None, host, bridges)[:2] == ("vmbr0", None)
    assert locate.where_to_probe("10.0.30.77", None, host, bridges)[:2] == ("vmbr1", 30)
    assert locate.where_to_probe("10.0.40.77", None, host, bridges)[:2] == ("vmbr1", 40)
    assert locate.where_to_probe("192.168.9.7", None, host, bridges) is None      # eno2 is no bridge
    assert locate.where_to_probe("10.0.5.77", None, host, bridges, GUESTS)[:2] == ("vmbr1", 20)
    assert locate.where_to_probe("fd00::77", None, host, bridges, GUESTS)[:2] == ("vmbr0", None)
    assert locate.where_to_probe("172.16.0.1", None, host, bridges, GUESTS) is None


@pytest.mark.parametrize("text", ["10.0.0.300", "", "fe80::1%eth0x", "not an ip", "10.0.0.219/24"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        locate.parse_address(text)


@pytest.mark.parametrize("text", ["0.0.0.0", "255.255.255.255", "127.0.0.1", "ff02::1", "::", "::1"])
def test_parse_address_rejects_non_unicast(text):
    with pytest.raises(ValueError, match="not a unicast host address"):
        locate.parse_address(text)


# -- verdicts and words ------------------------------------------------------------------------
OWNER = locate.owners_of("10.0.0.157", GUESTS, "pve2")[0]         # CT 957 on pve2


def ans(mac, where="uplink", port="eno1", **kw):
    return locate.Answer(mac=mac, vendor=kw.pop("vendor", None), port=port, where=where, **kw)


def test_verdicts():
    own = ans("52:54:00:67:89:b7")
    other = ans("3c:52:82:11:22:33")
    assert locate.verdict(OWNER, []) == "silent"
    assert locate.verdict(OWNER, [own]) == "owner"
    assert locate.verdict(OWNER, [own, other]) == "foreign"
    assert locate.verdict(None, [other]) == "foreign"
    node = locate.Owner(vmid=None, type="node", node="pve2", nic=None, name="pve2", mac=None)
    assert locate.verdict(node, [other]) == "owner"                 # a node's MAC is not configured
    assert locate.verdict(node, [own, other]) == "foreign"
    me = locate.Owner(vmid=None, type="node", node="pve1", nic="vmbr0", name="pve1", mac="02:00:00:00:00:01")
    assert locate.verdict(me, [ans("02:00:00:00:00:01", "host", "vmbr0")]) == "owner"
    assert [locate.exit_code(v) for v in ("owner", "silent", "foreign")] == [0, 0, 1]


def test_lease_for_prefers_this_address():
    f = leasefiles.parse("1758103600 3c:52:82:11:22:33 10.0.0.219 laptop-bob *\n"
                     "1758107200 3c:52:82:11:22:33 10.0.0.218 laptop-bob *\n"
                     "1758107200 02:00:00:00:00:09 10.0.0.9 other *\n", "/l")
    got = locate.lease_for("3c:52:82:11:22:33", "10.0.0.219", f.leases)
    assert got.ip == "10.0.0.219"
    assert locate.lease_for("3c:52:82:11:22:33", "10.0.0.7", f.leases).ip == "10.0.0.218"   # the newest
    assert locate.lease_for("02:00:00:00:00:77", "10.0.0.7", f.leases) is None
    assert locate.lease_json(got) == {"ip": "10.0.0.219", "hostname": "laptop-bob",
                                      "expires": "2025-09-17T10:06:40Z", "file": "/l"}


def test_text_lines(monkeypatch):
    import time
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        now = 1_758_100_000
        lease = {"ip": "10.0.0.157", "hostname": "laptop-bob", "expires": "x", "file": "/l"}
        lines = locate.text_lines("10.0.0.157", OWNER, [
            ans("52:54:00:67:89:b7"),
            ans("3c:52:82:11:22:33", vendor="HP", lease=lease, expires_epoch=now + 3600),
            ans("02:00:00:00:00:05", "guest", "veth958i0", vmid=958, nic="net0", kind="probe",
                mac_owner="CT 958 ct958 net0"),
            ans("02:00:00:00:00:06", "unknown", None)], now=now,
            guest_label={958: "CT 958 ct958"}.get)
        assert lines == [
            "10.0.0.157 answered by 52:54:00:67:89:b7 (vendor unknown) behind uplink eno1; that is its owner, "
            "CT 957 ct957 net0",
            "10.0.0.157 answered by 3c:52:82:11:22:33 (HP) behind uplink eno1, DHCP lease 'laptop-bob' until "
            "10:06; the address belongs to CT 957 ct957 net0 on node pve2",
            "10.0.0.157 is being claimed (probed for) by 02:00:00:00:00:05 (vendor unknown, the MAC of CT 958 "
            "ct958 net0) on CT 958 ct958 net0 (port veth958i0); the address belongs to CT 957 ct957 net0 on "
            "node pve2",
            "10.0.0.157 answered by 02:00:00:00:00:06 (vendor unknown) on a port the bridge has not learned "
            "(not in its forwarding database); the address belongs to CT 957 ct957 net0 on node pve2"]
        assert locate.text_lines("10.0.0.9", None, [], now=now, iface="vmbr0", vlan=20, window_ms=750) == [
            "nobody answered for 10.0.0.9 on vmbr0 VLAN 20 within 750 ms; no guest or node is configured with it"]
    finally:
        monkeypatch.undo()
        time.tzset()


# -- the probe run keeps listening -------------------------------------------------------------
def test_collect_keeps_probing_and_every_mac():
    from phoenix_hook.net import arp
    cand = acd.Candidate(key="k", ip="10.0.0.154", iface="vmbr0", src_mac="02:00:00:00:00:01")
    run = acd.ProbeRun([cand], acd.schedule_for(900), stop_on_first=False, collect=True, rand=lambda: 0.0)
    run.start(0.0)
    assert len(run.due(0.0)) == 1
    for mac in ("52:54:00:67:89:b4", "02:00:00:00:01:54", "52:54:00:67:89:b4"):
        pkt = arp.parse(arp.build_reply(mac, "10.0.0.154", "02:00:00:00:00:01", "0.0.0.0"))
        run.feed("vmbr0", pkt, 0.05)
    assert [c.mac for c in run.conflicts["k"]] == ["52:54:00:67:89:b4", "02:00:00:00:01:54"]
    assert not run.done(0.2)                         # a conflict does not end a collecting run
    assert len(run.due(0.1)) == 1                    # and probing goes on
    assert run.done(run.window + 1e-9)
    plain = acd.ProbeRun([cand], acd.schedule_for(900), stop_on_first=False, rand=lambda: 0.0)
    plain.start(0.0)
    plain.due(0.0)
    plain.feed("vmbr0", arp.parse(arp.build_reply("02:00:00:00:01:54", "10.0.0.154", "02:00:00:00:00:01",
                                                  "0.0.0.0")), 0.05)
    assert plain.done(0.06)                          # the hook's check: one conflict ends it


@pytest.mark.parametrize("v,lost,code", [(locate.SILENT, 0, 0), (locate.OWNER, 0, 0), (locate.FOREIGN, 0, 1),
                                         (locate.SILENT, 5, 3), (locate.OWNER, 5, 3), (locate.FOREIGN, 5, 1)])
def test_lost_frames_are_never_silence(v, lost, code):
    """Frames the kernel dropped while locate listened may have held another answer: silent or
    owner-only is then unproven (exit 3); a foreign answer already seen still stands (exit 1)."""
    assert locate.exit_code(v, lost) == code

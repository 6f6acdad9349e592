"""plan.py: reading plans (fixture shape and generic list) and the config-level findings."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import LAB_PLAN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phoenix_hook.pve.guest import parse_config
from phoenix_hook.checks.plan import (PlanEntry, PlanError, check_plan, load_plan, loads_plan, parse_plan,
                               select, to_guests)

FIXTURE = LAB_PLAN        # the deployment's plan shape, guests of our own (tests/data)
FIXTURE_VMIDS = [900, 901, 902, 910, 920, 950, 951, 952, 953, 954, 955, 956, 957]


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def entries_of(doc) -> list[PlanEntry]:
    return parse_plan(doc, "plan.json")


def lxc(vmid, *nets, name=None, node="pve1", gtype="lxc", template=False):
    lines = [f"hostname: {name or f'ct{vmid}'}"] + [f"net{i}: {n}" for i, n in enumerate(nets)]
    if template:
        lines.append("template: 1")
    return parse_config("\n".join(lines) + "\n", vmid, gtype, node)


def kinds(issues, vmid, nic="net0"):
    return sorted(i.kind for i in issues[(vmid, nic)])


# -- reading the fixture shape ---------------------------------------------------

def test_fixture_is_read():
    es = load_plan(str(FIXTURE))
    assert [e.vmid for e in es] == FIXTURE_VMIDS
    e = next(e for e in es if e.vmid == 951)
    assert (e.nic, e.bridge, e.ip, e.address, e.prefixlen, e.gw, e.mac, e.vlan, e.name, e.type) == (
        "net0", "vmbr0", "10.0.0.151/24", "10.0.0.151", 24, "10.0.0.1", "52:54:00:67:89:b1", None,
        "embed-api", "lxc")
    assert {e.address for e in es} >= {"10.0.0.99", "10.0.0.200", "10.0.0.157"}


def test_fixture_is_clean_on_its_own():
    es = load_plan(str(FIXTURE))
    issues = check_plan(es)
    assert all(v == [] for v in issues.values()), issues


def test_network_config_list_and_vlan():
    doc = {"lxc_configs": {"960": {"name": "multi", "mac_address": "52:54:00:00:09:60", "network_config": [
        {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.160/24", "gw": "10.0.0.1"},
        {"name": "eth1", "bridge": "vmbr1", "ip": "192.168.20.5/24", "tag": 20,
         "mac_address": "52:54:00:00:19:60"},
        {"name": "eth2", "bridge": "vmbr1", "ip": "dhcp"}]}}}
    es = entries_of(doc)
    assert [(e.nic, e.address, e.mac, e.vlan, e.ip) for e in es] == [
        ("net0", "10.0.0.160", "52:54:00:00:09:60", None, "10.0.0.160/24"),
        ("net1", "192.168.20.5", "52:54:00:00:19:60", 20, "192.168.20.5/24"),
        ("net2", None, None, None, "dhcp")]


def test_a_container_without_network_is_no_entry():
    assert entries_of({"lxc_configs": {"960": {"name": "offline"}}}) == []


# -- the generic list ------------------------------------------------------------

def test_generic_list():
    es = entries_of([
        {"vmid": 951, "nic": "net0", "bridge": "vmbr0", "ip": "10.0.0.151/24", "mac": "52-54-00-67-89-B1",
         "vlan": None, "gw": "10.0.0.1", "name": "embed"},
        {"vmid": "120", "nic": 1, "bridge": "vmbr0", "ip": "10.0.30.5/24", "mac": "A2:C0:43:67:08:A1",
         "vlan": 30, "type": "qemu"},
    ])
    assert [(e.vmid, e.nic, e.mac, e.vlan, e.type, e.label) for e in es] == [
        (120, "net1", "a2:c0:43:67:08:a1", 30, "qemu", "VM 120"),
        (951, "net0", "52:54:00:67:89:b1", None, "lxc", "CT 951")]
    g = to_guests(es)
    assert [(x.vmid, x.type, [n.key for n in x.nics]) for x in g] == [(120, "qemu", ["net1"]), (951, "lxc", ["net0"])]
    assert g[1].nics[0].ip_mode == "static" and g[1].nics[0].hwaddr == "52:54:00:67:89:b1"


def test_generic_entry_without_bridge_gets_the_default_bridge():
    es = entries_of([{"vmid": 960, "ip": "10.0.0.160/24"},
                     {"vmid": 961, "ip": "10.0.0.161/24", "bridge": "vmbr1"},
                     {"vmid": 962, "ip": "10.0.0.162/24", "bridge": ""}])
    assert [(e.vmid, e.bridge, e.bridge_default) for e in es] == [
        (960, "vmbr0", True), (961, "vmbr1", False), (962, "vmbr0", True)]
    assert to_guests(es)[0].nics[0].bridge == "vmbr0"


@pytest.mark.parametrize("doc,needle", [
    ({"guests": []}, "not a plan"),
    ("just text", "not a plan"),
    ({"lxc_configs": []}, "lxc_configs: must be an object keyed by CTID"),
    ({"lxc_configs": {"abc": {}}}, 'lxc_configs["abc"]: \'abc\' is not a CTID'),
    ({"lxc_configs": {"99": {}}}, "from 100"),
    ({"lxc_configs": {"951": "x"}}, "must be an object"),
    ({"lxc_configs": {"951": {"network_config": "eth0"}}}, "network_config: must be an object"),
    ({"lxc_configs": {"951": {"network_config": {"ip": "10.0.0.151"}}}}, "has no prefix length; write it with its subnet, e.g. 10.0.0.151/24"),
    ({"lxc_configs": {"951": {"network_config": {"ip": "10.0.0.300/24"}}}}, "is not dhcp, manual or an IPv4"),
    ({"lxc_configs": {"951": {"network_config": {"ip": "10.0.0.5/33"}}}}, "is not dhcp, manual or an IPv4"),
    ({"lxc_configs": {"951": {"network_config": {"ip": "224.0.0.5/24"}}}}, "not a unicast host address"),
    ({"lxc_configs": {"951": {"network_config": {"ip": "10.0.0.5/24", "gw": "10.0.0"}}}}, ".gw: '10.0.0' is not an IPv4"),
    ({"lxc_configs": {"951": {"mac_address": "52:54:00:67:89", "network_config": {"ip": "dhcp"}}}}, "is not a MAC"),
    ({"lxc_configs": {"951": {"mac_address": "01:00:5e:00:00:01", "network_config": {"ip": "dhcp"}}}}, "multicast MAC"),
    ({"lxc_configs": {"951": {"network_config": {"ip": "dhcp", "tag": 5000}}}}, "not a VLAN ID"),
    ({"lxc_configs": {"951": {"network_config": {"ip": "dhcp", "bridge": "vmbr0; rm -rf"}}}}, "not a bridge name"),
    ([{"vmid": 951}], "[0]: has no ip"),
    ([{"ip": "dhcp"}], "[0]: has no vmid"),
    ([{"vmid": True, "ip": "dhcp"}], "True is not a CTID"),
    ([{"vmid": 951, "ip": "dhcp", "nic": "eth0"}], "not a NIC like net0"),
    ([{"vmid": 951, "ip": "dhcp", "type": "docker"}], "is not lxc or qemu"),
    ([{"vmid": 951, "ip": "dhcp"}, {"vmid": 951, "ip": "dhcp", "nic": 0}], "CT 951 net0 is planned twice"),
    ([7], "[0]: each entry must be an object"),
])
def test_plan_errors_are_one_clear_line(doc, needle):
    with pytest.raises(PlanError) as ei:
        parse_plan(doc, "plan.json")
    msg = str(ei.value)
    assert needle in msg, msg
    assert msg.startswith("plan.json") and "\n" not in msg
    assert msg.endswith("fix the plan") or "README" in msg


def test_loads_plan_errors(tmp_path):
    with pytest.raises(PlanError, match=r"not valid JSON \(line 1 column 2"):
        loads_plan("{oops", "p.json")
    with pytest.raises(PlanError, match="not UTF-8"):
        loads_plan(b"\xff\xfe{}", "p.json")
    with pytest.raises(PlanError, match="nested too deeply|cannot be read"):
        loads_plan("[" * 100000 + "]" * 100000, "p.json")
    with pytest.raises(PlanError, match="no such plan file; check the path"):
        load_plan(str(tmp_path / "missing.json"))
    with pytest.raises(PlanError, match="is a directory, not a plan file"):
        load_plan(str(tmp_path))
    assert loads_plan(b"\xef\xbb\xbf[]", "bom.json") == []       # a BOM is fine


def test_select():
    es = load_plan(str(FIXTURE))
    assert [e.vmid for e in select(es, [952, 951])] == [951, 952]
    assert select(es, []) == es
    with pytest.raises(PlanError, match=r"guest 999 is not in plan.json \(it has 900, 901"):
        select(es, [999], "plan.json")


# -- findings, on the fixture with injected faults ----------------------------------

def fixture_with(**changes):
    """changes: {"952": {"ip": ..., "gw": ..., "mac_address": ...}} on top of the fixture."""
    doc = fixture()
    for ctid, ch in changes.items():
        cfg = doc["lxc_configs"].setdefault(ctid.lstrip("_"), copy.deepcopy(doc["lxc_configs"]["957"]))
        for k, v in ch.items():
            if k in ("mac_address", "name"):
                cfg[k] = v
            else:
                cfg["network_config"][k] = v
    return entries_of(doc)


def test_duplicate_ip_in_the_plan_names_both():
    es = fixture_with(_952={"ip": "10.0.0.151/24"})
    issues = check_plan(es)
    [a] = issues[(951, "net0")]
    [b] = issues[(952, "net0")]
    assert (a.kind, a.vmids) == ("plan-duplicate-ip", (951, 952))
    assert (b.kind, b.vmids) == ("plan-duplicate-ip", (952, 951))
    assert "10.0.0.151 is also planned for CT 952 net0" in a.detail


def test_same_ip_in_another_vlan_is_not_a_duplicate():
    es = fixture_with(_952={"ip": "10.0.0.151/24", "tag": 20})
    assert check_plan(es)[(952, "net0")] == []


def test_duplicate_mac_in_the_plan():
    es = fixture_with(_953={"mac_address": "52:54:00:67:89:B1"})
    issues = check_plan(es)
    assert [(i.kind, i.vmids, i.mac) for i in issues[(953, "net0")]] == [
        ("plan-duplicate-mac", (953, 951), "52:54:00:67:89:b1")]


def test_ip_and_mac_used_by_existing_guests():
    es = load_plan(str(FIXTURE))
    cluster = [
        lxc(300, "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:03:00,ip=10.0.0.152/24", name="squatter", node="pve2"),
        lxc(301, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B3,ip=dhcp", name="clone", template=True),
    ]
    issues = check_plan(es, es, cluster)
    [i] = issues[(952, "net0")]
    assert (i.kind, i.vmids, i.node) == ("ip-in-use", (952, 300), "pve2")
    assert i.detail == "CT 952 net0: 10.0.0.152 is already configured on CT 300 (squatter) net0 on node pve2"
    [m] = issues[(953, "net0")]
    assert (m.kind, m.vmids) == ("mac-in-use", (953, 301))
    assert "template CT 301 (clone)" in m.detail


def test_the_same_ctid_reapplied_is_not_a_conflict():
    es = load_plan(str(FIXTURE))
    cluster = [lxc(951, "name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24,type=veth")]
    assert check_plan(es, es, cluster)[(951, "net0")] == []
    # ...but the same VMID held by a VM is
    vm = parse_config("name: vm951\nnet0: virtio=52:54:00:67:89:B1,bridge=vmbr0\nipconfig0: ip=10.0.0.151/24\n",
                      951, "qemu", "pve2")
    assert kinds(check_plan(es, es, [vm]), 951) == ["ip-in-use", "mac-in-use", "vmid-in-use"]


@pytest.mark.parametrize("net,expect", [
    ({"ip": "10.0.0.0/24"}, ["network-address"]),
    ({"ip": "10.0.0.255/24"}, ["broadcast-address"]),
    ({"ip": "10.0.0.1/24"}, ["gateway-address", "gateway-address"]),   # its own, and everyone's gateway
    ({"ip": "10.0.0.158/24", "gw": "10.0.1.1"}, ["gateway-outside-subnet"]),
    ({"ip": "10.0.0.158/32", "gw": "10.0.0.1"}, []),      # PVE's routed /32 setup
    ({"ip": "10.0.0.158/31", "gw": "10.0.0.159"}, []),    # RFC 3021: both ends usable
    ({"ip": "10.0.0.159/31", "gw": "10.0.0.158"}, []),
    ({"ip": "dhcp"}, []),
])
def test_address_rules(net, expect):
    es = fixture_with(_958=dict(net))
    es = [e if e.vmid != 958 else PlanEntry(**{**e.__dict__, "mac": "52:54:00:67:89:b8"}) for e in es]
    assert kinds(check_plan(es), 958) == expect


def test_gateway_rule_respects_ignore():
    es = fixture_with(_958={"ip": "10.0.0.1/24", "gw": None})
    es = [e if e.vmid != 958 else PlanEntry(**{**e.__dict__, "mac": "52:54:00:67:89:b8"}) for e in es]
    [i] = check_plan(es)[(958, "net0")]
    assert i.kind == "gateway-address" and 900 in i.vmids and 957 in i.vmids
    assert check_plan(es, ignored=lambda a: a == "10.0.0.1")[(958, "net0")] == []


def test_host_and_node_addresses():
    es = load_plan(str(FIXTURE))
    issues = check_plan(es, host_ips={"10.0.0.99"}, node_ips={"10.0.0.200": "pve1"})
    assert [i.detail for i in issues[(910, "net0")]] == ["CT 910 net0: 10.0.0.99 is one of this host's own addresses"]
    assert [i.kind for i in issues[(900, "net0")]] == ["node-address"]
    assert "cluster node pve1" in issues[(900, "net0")][0].detail


def test_dhcp_pool_the_outage():
    # The pool 10.0.0.100-199 hands out what the plan gave to 950..957.
    es = load_plan(str(FIXTURE))
    issues = check_plan(es, dhcp_ranges=(("10.0.0.100", "10.0.0.199"),))
    flagged = sorted(v for (v, _n), found in issues.items() if any(i.kind == "dhcp-pool" for i in found))
    assert flagged == [950, 951, 952, 953, 954, 955, 956, 957]
    assert "inside the DHCP pool 10.0.0.100-10.0.0.199" in issues[(951, "net0")][0].detail


def test_selected_only_but_against_the_whole_plan():
    es = fixture_with(_952={"ip": "10.0.0.151/24"})
    issues = check_plan(es, select(es, [952]))
    assert list(issues) == [(952, "net0")]
    assert issues[(952, "net0")][0].vmids == (952, 951)


# -- never anything but PlanError ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30)
leaf = (st.none() | st.booleans() | st.integers(-5, 5000) | st.text(max_size=25) | st.floats()
        | st.sampled_from(["10.0.0.5/24", "10.0.0.5", "dhcp", "manual", "52:54:00:67:89:B1", "vmbr0",
                           "net0", "net31", "net32", "0.0.0.0/0", "255.255.255.255/32", "10.0.0.5/0",
                           "\u00b2", "10.0.0.5/\u00b2", "\ud800", "lxc", "qemu", 4094, 4095, 100, 99]))
net_cfg = st.dictionaries(st.sampled_from(["name", "bridge", "ip", "gw", "tag", "vlan", "mac_address", "hwaddr"]),
                          leaf, max_size=6)
fixture_like = st.builds(
    lambda cfgs: {"lxc_configs": cfgs},
    st.dictionaries(st.text(max_size=4) | st.sampled_from(["951", "100", "999999999", "1000000000"]),
                    st.fixed_dictionaries({}, optional={"name": leaf, "mac_address": leaf,
                                                        "network_config": net_cfg | st.lists(net_cfg, max_size=3) | leaf}),
                    max_size=4))
generic_like = st.lists(st.dictionaries(
    st.sampled_from(["vmid", "nic", "bridge", "ip", "mac", "vlan", "gw", "name", "type", "hwaddr"]), leaf,
    max_size=9), max_size=5)


def _only_plan_error(doc):
    try:
        es = parse_plan(doc, "fuzz.json")
    except PlanError as exc:
        assert "\n" not in str(exc)
        return
    for e in es:
        assert 100 <= e.vmid <= 999999999
        assert e.address is None or e.prefixlen is not None
    check_plan(es, es, dhcp_ranges=(("10.0.0.100", "10.0.0.199"),), host_ips={"10.0.0.5"})
    to_guests(es)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_any_json_value(doc):
    _only_plan_error(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fixture_like | generic_like)
def test_fuzz_plan_shaped_values(doc):
    _only_plan_error(doc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_bytes(raw):
    try:
        loads_plan(raw, "fuzz.json")
    except PlanError as exc:
        assert "\n" not in str(exc)

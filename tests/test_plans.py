"""The plan shapes a deployment really writes: secondary NICs, per-NIC hwaddr, VM plans,
raw lxc_options, several plan files in one call, and what a plan leaves out said.

Small plans written here run everywhere; the deployment's real plans
(../shared/fixtures/phoenix-plans, SOURCES.md) run where that directory is, and
skip with the reason where it is not. No test here probes: --no-probe / probe=False.
"""
from __future__ import annotations

import json

import pytest
from conftest import shared_fixture
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import phoenix_hook
from phoenix_hook.checks.plan import PlanError, check_plan, combine, read_plan, read_plan_file
from phoenix_hook.cli import main as cli
from phoenix_hook.net import lab as labmod
from phoenix_hook.pve.files import FileSource
from phoenix_hook.settings import Settings

NODE = "pve1"

# The deployment's newest LXC shape, guests and addresses of our own.
LXC_PLAN = {
    "$schema": "ignored",
    "lxc_configs": {
        "101": {"name": "gateway",
                "network_config": {"name": "eth0", "bridge": "vmbr0.20", "ip": "dhcp", "hwaddr": "02:00:00:00:01:01"},
                "secondary_network_config": {"name": "eth1", "bridge": "vmbr100", "ip": "172.16.50.10/24",
                                             "hwaddr": "02:00:00:00:01:02", "gw": "172.16.50.1"},
                "mac_address": "02:00:00:00:01:01",
                "lxc_options": ["lxc.apparmor.profile: unconfined", "lxc.net.0.type: macvlan",
                                "lxc.net.0.macvlan.mode: bridge", "lxc.net.0.link: vmbr0.20"]},
        "102": {"name": "proxy", "network_config": {"name": "eth0", "bridge": "vmbr100", "ip": "172.16.50.12/24",
                                                    "gw": "172.16.50.1", "nameservers": "172.16.50.1"},
                "secondary_network_config": None, "mac_address": "52:54:00:aa:bb:cb"},
        "103": {"name": "no-network"},
        "104": {"name": "app", "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.104/24",
                                                  "gw": "10.0.0.1"}, "mac_address": "52:54:00:aa:bb:a4"},
    },
}
# The deployment's VM shape.
VM_PLAN = {
    "vm_defaults": {"template": "ubuntu", "cores": 2, "network_bridge": "vmbr1"},
    "vms": [
        {"vmid": 9000, "name": "cloud-template", "is_template": True,
         "network_config": {"ip": "dhcp", "nameserver": "10.0.0.13"}},
        {"vmid": 1001, "name": "manager", "clone_from_vmid": 9000,
         "network_config": {"ip": "10.0.0.111/24", "gw": "10.0.0.1", "nameserver": "10.0.0.13"}},
        {"vmid": 1002, "name": "worker", "network_bridge": "vmbr2",
         "network_config": {"ip": "10.0.0.104/24", "gw": "10.0.0.1"}},
        {"vmid": 1003, "name": "offline"},
    ],
}


def write_json(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "etc-pve"
    (root / "nodes" / NODE / "lxc").mkdir(parents=True)
    return root


def run_preflight(plan, tree, ctids=None):
    return phoenix_hook.preflight(plan, ctids, settings=Settings(pve_root=str(tree), node=NODE),
                                  source=FileSource(str(tree), NODE), probe=False)


def conf(tmp_path, root):
    p = tmp_path / "phoenix-hook.conf"
    p.write_text(f"[phoenix-hook]\npve_root = {root}\nnode = {NODE}\nlog_file = {tmp_path}/log.jsonl\n"
                 f"run_dir = {tmp_path}/run\n")
    return str(p)


# -- the LXC shape: secondary NICs, hwaddr, lxc_options ----------------------------------------

def test_secondary_network_config_is_net1_with_its_own_hwaddr():
    es, notes = read_plan(LXC_PLAN, "lxc.json")
    by = {(e.vmid, e.nic): e for e in es}
    n1 = by[(101, "net1")]
    assert (n1.address, n1.bridge, n1.mac, n1.gw) == ("172.16.50.10", "vmbr100", "02:00:00:00:01:02", "172.16.50.1")
    assert n1.where == 'lxc_configs["101"].secondary_network_config'
    n0 = by[(101, "net0")]
    assert (n0.ip, n0.bridge, n0.mac) == ("dhcp", "vmbr0.20", "02:00:00:00:01:01")
    assert (102, "net1") not in by                        # secondary_network_config: null = none
    assert by[(104, "net0")].mac == "52:54:00:aa:bb:a4"  # net0 falls back to mac_address
    assert [(n.vmid, n.text) for n in notes] == [
        (101, "net0 is a macvlan interface on vmbr0.20 (lxc_options)"),
        (103, "has no network_config: no NIC to check")]


def test_per_nic_hwaddr_wins_over_the_entry_mac_and_only_net0_falls_back():
    doc = {"lxc_configs": {"200": {"mac_address": "52:54:00:00:02:00", "network_config": [
        {"bridge": "vmbr0", "ip": "10.0.0.200/24", "hwaddr": "52:54:00:00:02:01"},
        {"bridge": "vmbr0", "ip": "10.0.0.201/24"}]}}}
    es = read_plan(doc, "p.json")[0]
    assert [(e.nic, e.mac) for e in es] == [("net0", "52:54:00:00:02:01"), ("net1", None)]


def test_a_duplicate_of_the_secondary_address_is_a_finding(tree):
    labmod.write_tree(str(tree), NODE, {300: "hostname: squatter\n"
                                             "net0: name=eth0,bridge=vmbr100,hwaddr=BC:24:11:00:03:00,"
                                             "ip=172.16.50.10/24\n"})
    r = run_preflight(LXC_PLAN, tree)
    assert r.exit_code == 1
    [f] = r.findings
    assert (f.kind, f.vmids) == ("ip-in-use", [101, 300]) and "net1" in f.detail
    issues = check_plan(read_plan({"lxc_configs": {**LXC_PLAN["lxc_configs"], "105": {
        "network_config": {"bridge": "vmbr100", "ip": "172.16.50.10/24"}}}}, "p.json")[0])
    assert [i.kind for i in issues[(101, "net1")]] == ["plan-duplicate-ip"]


RAW_DOC = {"lxc_configs": {"110": {"network_config": {"bridge": "vmbr0", "ip": "10.0.0.110/24"},
                                   "lxc_options": ["lxc.net.0.link = vmbr7", "lxc.net.0.hwaddr: 02:00:00:00:11:00",
                                                   "lxc.net.1.type: macvlan", "lxc.net.1.link: vmbr0.30",
                                                   "lxc.net.1.ipv4.address = 10.0.30.110/24"]},
                           "111": {"network_config": {"bridge": "vmbr0", "ip": "10.0.0.111/24"},
                                   "lxc_options": ["lxc.net.0.type: empty"]}}}


def test_raw_lxc_options_read_as_lxc_reads_them():
    es, notes = read_plan(RAW_DOC, "p.json")
    assert [(e.vmid, e.nic, e.bridge, e.address, e.mac) for e in es] == [
        (110, "net0", "vmbr7", "10.0.0.110", "02:00:00:00:11:00"),
        (110, "lxc.net.1", "vmbr0.30", "10.0.30.110", None)]
    assert [n.text for n in notes if n.vmid == 111] == [
        "net0 is not checked: lxc_options make it type=empty, no interface of its own on the LAN"]


def test_raw_lxc_options_in_a_preflight(tree):
    r = run_preflight(RAW_DOC, tree)
    by = {g["vmid"]: g for g in r.to_json()["plan"]}
    assert [(n["nic"], n["ip"], n["bridge"]) for n in by[110]["nics"]] == [
        ("net0", "10.0.0.110", "vmbr7"), ("lxc.net.1", "10.0.30.110", "vmbr0.30")]
    assert by[111]["nics"] == [] and "type=empty" in by[111]["notes"][0]


@pytest.mark.parametrize("options, words", [
    ([7], "must be a string"), (["apparmor: x"], "is not a raw lxc.* line"),
    (["lxc.net.0.type: bogus\x1b"], "'bogus\\x1b' is not a liblxc network type"),
    (["lxc.net.0.type: veth", "lxc.net.0.ipv4.address: 10.0.0.300/24"], "ipv4.address='10.0.0.300/24'"),
    ("lxc.net.0.type: veth", "must be a list"),
])
def test_bad_lxc_options_are_one_line_plan_errors(options, words):
    doc = {"lxc_configs": {"110": {"network_config": {"bridge": "vmbr0", "ip": "10.0.0.110/24"},
                                   "lxc_options": options}}}
    with pytest.raises(PlanError) as ei:
        read_plan(doc, "p.json")
    assert words in str(ei.value) and str(ei.value).isprintable() and 'lxc_configs["110"].lxc_options' in str(ei.value)


# -- the VM shape ------------------------------------------------------------------------------

def test_vm_plan_is_read_as_qemu_cloud_init_nics():
    es, notes = read_plan(VM_PLAN, "vm.json")
    assert [(e.vmid, e.type, e.nic, e.ip, e.bridge, e.bridge_default) for e in es] == [
        (1001, "qemu", "net0", "10.0.0.111/24", "vmbr1", False),     # vm_defaults.network_bridge
        (1002, "qemu", "net0", "10.0.0.104/24", "vmbr2", False),     # the VM's own network_bridge
        (9000, "qemu", "net0", "dhcp", "vmbr1", False)]
    assert es[0].label == "VM 1001" and es[0].where == "vms[1].network_config"
    assert [(n.vmid, n.type, n.text) for n in notes] == [
        (1003, "qemu", "has no network_config: no cloud-init address to check")]
    no_defaults = read_plan({"vms": [{"vmid": 1001, "network_config": {"ip": "10.0.0.111/24"}}]}, "v.json")[0]
    assert (no_defaults[0].bridge, no_defaults[0].bridge_default) == ("vmbr0", True)


@pytest.mark.parametrize("doc, words", [
    ({"vms": {}}, "vms: must be a list"),
    ({"vms": [{"name": "x"}]}, "vms[0]: has no vmid"),
    ({"vms": [{"vmid": 99}]}, "vms[0].vmid: 99 is not a CTID/VMID"),
    ({"vms": [{"vmid": 1001, "network_config": "dhcp"}]}, "vms[0].network_config: must be an object"),
    ({"vms": [{"vmid": 1001, "network_config": {"ip": "10.0.0.1/4"}}]}, "is not dhcp, manual or an IPv4"),
    ({"vm_defaults": {"network_bridge": "vmbr 0"}, "vms": []}, "vm_defaults.network_bridge"),
    ({"vm_defaults": [], "vms": []}, "vm_defaults: must be an object"),
    ({"lxc_configs": {"1001": {"network_config": {"ip": "dhcp"}}}, "vms": [{"vmid": 1001}]},
     "planned both as a container and as a VM"),
])
def test_vm_plan_errors_are_one_clear_line(doc, words):
    with pytest.raises(PlanError) as ei:
        read_plan(doc, "vm.json")
    assert words in str(ei.value) and str(ei.value).startswith("vm.json") and "\n" not in str(ei.value)


def test_left_out_guests_are_in_the_report_with_why(tree):
    r = run_preflight(VM_PLAN, tree)
    by = {g["vmid"]: g for g in r.to_json()["plan"]}
    assert by[1003]["nics"] == [] and by[1003]["notes"] == ["has no network_config: no cloud-init address to check"]
    assert by[1003]["verdict"] == "skipped" and r.exit_code == 0
    assert "VM 1003: has no network_config" in r.table()
    only = run_preflight(VM_PLAN, tree, [1003]).to_json()["plan"]
    assert [g["vmid"] for g in only] == [1003]


# -- several plan files ----------------------------------------------------------------------------

def test_an_address_in_two_files_is_a_finding_naming_both(tmp_path, tree):
    lxc = write_json(tmp_path, "lxc.json", LXC_PLAN)
    vm = write_json(tmp_path, "vm.json", VM_PLAN)
    # each file alone: clean
    assert run_preflight(lxc, tree).exit_code == 0 and run_preflight(vm, tree).exit_code == 0
    r = run_preflight([lxc, vm], tree)
    assert r.exit_code == 1
    f104 = [f for g in r.guests if g.vmid == 104 for n in g.nics for f in n.conflicts]
    [f] = f104
    assert f.kind == "plan-duplicate-ip" and f.vmids == [104, 1002]
    assert f"VM 1002 net0 in {vm} vms[2].network_config" in f.detail
    assert f'this one: {lxc} lxc_configs["104"].network_config' in f.detail
    # a guest selected from one file is still checked against the other
    r = run_preflight([lxc, vm], tree, [1002])
    assert r.exit_code == 1 and [g.vmid for g in r.guests] == [1002]


def test_a_guest_id_in_two_files_is_a_plan_error(tmp_path):
    a = write_json(tmp_path, "a.json", {"lxc_configs": {"104": LXC_PLAN["lxc_configs"]["104"]}})
    b = write_json(tmp_path, "b.json", {"vms": [{"vmid": 104, "network_config": {"ip": "dhcp"}}]})
    with pytest.raises(PlanError, match=r"VMID 104 is planned twice: in .*a\.json .* and in .*b\.json"):
        combine([read_plan_file(a), read_plan_file(b)])


def test_cli_several_plans_and_ids_anywhere(tmp_path, tree, capsys):
    lxc = write_json(tmp_path, "lxc.json", LXC_PLAN)
    vm = write_json(tmp_path, "vm.json", VM_PLAN)
    c = conf(tmp_path, tree)
    assert cli.main(["--config", c, "preflight", lxc, vm, "--no-probe", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {g["vmid"] for g in doc["plan"]} == {101, 102, 103, 104, 1001, 1002, 1003, 9000}
    assert cli.main(["--config", c, "preflight", lxc, vm, "101", "1001", "--no-probe", "--json"]) == 0
    assert [g["vmid"] for g in json.loads(capsys.readouterr().out)["plan"]] == [101, 1001]
    assert cli.main(["--config", c, "preflight", lxc, "1001", "--no-probe"]) == 2
    err = capsys.readouterr().err
    assert "guest 1001 is not in" in err and err.count("\n") == 1


# -- the deployment's real plans (../shared/fixtures/phoenix-plans) ----------------------------------

def real(name):
    return str(shared_fixture(f"phoenix-plans/{name}"))


def test_every_real_plan_is_accepted():
    for name in ("lxc_configs.c295cb4.json", "lxc_configs.106c349.json", "lxc_configs.35c465b.json",
                 "vm_configs.106c349.json", "vm_configs.35c465b.json"):
        es, _notes = read_plan_file(real(name))
        assert es, name


def test_real_newest_plan_ct101_net1_is_checked(tree):
    es, _ = read_plan_file(real("lxc_configs.35c465b.json"))
    by = {(e.vmid, e.nic): e for e in es}
    n1 = by[(101, "net1")]
    assert (n1.address, n1.bridge, n1.mac) == ("172.16.100.10", "vmbr100", "02:00:00:00:01:02")
    assert (by[(101, "net0")].ip, by[(101, "net0")].bridge) == ("dhcp", "vmbr0.20")
    # a duplicate of it fails preflight: a guest already configured with it...
    labmod.write_tree(str(tree), NODE, {300: "hostname: squatter\nnet0: name=eth0,bridge=vmbr100,"
                                             "hwaddr=BC:24:11:00:03:00,ip=172.16.100.10/24\n"})
    r = run_preflight(real("lxc_configs.35c465b.json"), tree, [101])
    assert r.exit_code == 1 and [(f.kind, f.vmids) for f in r.findings] == [("ip-in-use", [101, 300])]


def test_real_newest_plan_duplicate_of_net1_in_another_plan_file(tmp_path, tree):
    other = write_json(tmp_path, "extra.json", [{"vmid": 199, "bridge": "vmbr100", "ip": "172.16.100.10/24"}])
    r = run_preflight([real("lxc_configs.35c465b.json"), other], tree, [101])
    assert r.exit_code == 1
    [f] = r.findings
    assert f.kind == "plan-duplicate-ip" and "CT 199 net0 in" in f.detail and "extra.json" in f.detail


def test_real_vm_plan_is_accepted_as_qemu():
    es, notes = read_plan_file(real("vm_configs.35c465b.json"))
    assert [(e.vmid, e.type, e.ip, e.bridge) for e in es] == [
        (1001, "qemu", "10.0.0.111/24", "vmbr0"), (1002, "qemu", "10.0.0.102/24", "vmbr0"),
        (9000, "qemu", "dhcp", "vmbr0")]
    assert notes == []


def test_real_ct101_and_vm8001_on_one_address_only_seen_with_both_files(tree):
    lxc, vm = real("lxc_configs.106c349.json"), real("vm_configs.106c349.json")
    for alone in (lxc, vm):
        assert not [f for f in run_preflight(alone, tree).findings if f.kind == "plan-duplicate-ip"]
    r = run_preflight([lxc, vm], tree)
    dups = sorted((f.vmids[0], f.vmids[1]) for f in r.findings if f.kind == "plan-duplicate-ip")
    assert dups == [(101, 8001), (8001, 101)] and r.exit_code == 1
    [f] = [f for f in r.findings if f.kind == "plan-duplicate-ip" and f.vmids[0] == 8001]
    assert "10.0.0.101 is also planned for CT 101 net0 in" in f.detail and "lxc_configs.106c349.json" in f.detail
    assert "vm_configs.106c349.json vms[1].network_config" in f.detail


def test_real_older_plan_duplicate_within_one_file():
    es, _ = read_plan_file(real("lxc_configs.c295cb4.json"))
    issues = check_plan(es)
    assert [i.vmids for i in issues[(902, "net0")] if i.kind == "plan-duplicate-ip"] == [(902, 958)]


# -- fuzz: any plan-shaped value, only PlanError ----------------------------------------------------

leaf = (st.none() | st.booleans() | st.integers(-5, 10000) | st.text(max_size=20)
        | st.sampled_from(["10.0.0.5/24", "dhcp", "vmbr0", "vmbr0.20", "02:00:00:00:01:01", "01:00:5e:00:00:01",
                           "lxc.net.0.type: macvlan", "lxc.net.1.ipv4.address = 10.0.0.9/24", "lxc.net.0.link=vmbr9",
                           "lxc.net.0.type: empty", "\x1b", 100, 1001, 8001]))
net = st.dictionaries(st.sampled_from(["name", "bridge", "ip", "gw", "tag", "hwaddr", "mac_address", "nameserver"]),
                      leaf, max_size=5)
ct = st.fixed_dictionaries({}, optional={"name": leaf, "mac_address": leaf, "network_config": net | leaf,
                                         "secondary_network_config": net | leaf,
                                         "lxc_options": st.lists(leaf, max_size=4) | leaf})
vm = st.fixed_dictionaries({}, optional={"vmid": leaf, "name": leaf, "network_config": net | leaf,
                                         "network_bridge": leaf, "mac_address": leaf})
plan = st.one_of(
    st.builds(lambda c: {"lxc_configs": c}, st.dictionaries(st.sampled_from(["101", "102", "8001", "x"]), ct, max_size=3)),
    st.builds(lambda d, v: {"vm_defaults": d, "vms": v}, st.dictionaries(st.just("network_bridge"), leaf) | leaf,
              st.lists(vm, max_size=3) | leaf),
)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan, plan)
def test_fuzz_plans_only_plan_errors_and_never_a_finding_from_nothing(a, b):
    try:
        es, notes = combine([read_plan(a, "a.json"), read_plan(b, "b.json")])
    except PlanError as exc:
        assert "\n" not in str(exc) and str(exc).isprintable()
        return
    assert all(n.text.isprintable() for n in notes)
    issues = check_plan(es)
    addresses = {}
    for e in es:
        if e.address:
            addresses.setdefault((e.address, e.vlan), []).append(e)
    for (vmid, nic), found in issues.items():
        for i in found:
            if i.kind == "plan-duplicate-ip":
                e = next(x for x in es if (x.vmid, x.nic) == (vmid, nic))
                assert len(addresses[(e.address, e.vlan)]) > 1

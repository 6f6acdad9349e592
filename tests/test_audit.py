"""audit: cluster-wide config-level findings, on the fixture's containers and injected faults."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LAB_PLAN

from phoenix_hook.checks import audit
from phoenix_hook.cli import main as cli
from phoenix_hook.net import lab as labmod
from phoenix_hook.pve import sources
from phoenix_hook.pve.guest import parse_config
from phoenix_hook.pve.files import FileSource, SourceError

FIXTURE = LAB_PLAN        # the deployment's plan shape, guests of our own (tests/data)


def fixture_configs() -> dict[int, str]:
    """The fixture's containers as pct writes their configs."""
    out = {}
    for k, v in json.loads(FIXTURE.read_text())["lxc_configs"].items():
        n = v["network_config"]
        out[int(k)] = (f"arch: amd64\nhostname: {v['name']}\nmemory: {v['memory_mb']}\n"
                       f"net0: name={n['name']},bridge={n['bridge']},gw={n['gw']},hwaddr={v['mac_address']},"
                       f"ip={n['ip']},type=veth\nostype: ubuntu\n"
                       f"hookscript: local:snippets/phoenix-hook.py\n")      # as install.sh attaches it
    return out


def guests_of(configs, node="pve1", kind="lxc"):
    return [parse_config(t, v, kind, node) for v, t in configs.items()]


def kinds(found):
    return sorted((f.kind, tuple(f.vmids)) for f in found)


def test_fixture_cluster_is_clean():
    assert audit.audit(guests_of(fixture_configs())) == []


def test_clone_that_kept_ip_and_mac():
    cfg = fixture_configs()
    cfg[958] = cfg[951].replace("embed-api", "embed-clone")
    found = audit.audit(guests_of(cfg))
    assert kinds(found) == [("duplicate-ip", (951, 958)), ("duplicate-mac", (951, 958))]
    ip = next(f for f in found if f.kind == "duplicate-ip")
    assert ip.ip == "10.0.0.151" and "CT 951 net0 on pve1, CT 958 net0 on pve1" in ip.detail
    assert [w.to_json()["name"] for w in ip.guests] == ["embed-api", "embed-clone"]


def test_same_ip_in_other_vlan_is_not_a_duplicate_but_same_mac_is():
    cfg = fixture_configs()
    cfg[958] = cfg[951].replace("type=veth", "tag=20,type=veth")
    assert kinds(audit.audit(guests_of(cfg))) == [("duplicate-mac", (951, 958))]


def test_duplicates_across_nodes_and_types():
    guests = guests_of(fixture_configs())
    vm = parse_config("name: vm\nnet0: virtio=52:54:00:67:89:B0,bridge=vmbr0\nipconfig0: ip=10.0.0.150/24\n",
                      120, "qemu", "pve2")
    found = audit.audit(guests + [vm])
    assert kinds(found) == [("duplicate-ip", (120, 950)), ("duplicate-mac", (120, 950))]
    assert "VM 120 net0 on pve2" in found[0].detail


def test_dhcp_pool_node_and_gateway_addresses():
    cfg = fixture_configs()
    cfg[960] = "hostname: router\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.1/24\n"
    found = audit.audit(guests_of(cfg), dhcp_ranges=(("10.0.0.100", "10.0.0.199"),),
                        node_ips={"10.0.0.200": "pve1"})
    got = kinds(found)
    assert [k for k in got if k[0] == "dhcp-pool"] == [("dhcp-pool", (v,)) for v in range(950, 958)]
    assert ("node-address", (900,)) in got
    gw = next(f for f in found if f.kind == "gateway-address")
    assert gw.vmids[0] == 900 and 960 in gw.vmids and gw.detail.startswith("CT 960 net0: 10.0.0.1 is the gateway of")
    # a router guest that really is the gateway: listed in `ignore`
    found = audit.audit(guests_of(cfg), ignored=lambda a: a == "10.0.0.1")
    assert not [f for f in found if f.kind == "gateway-address"]


@pytest.mark.parametrize("net0,kind", [
    ("name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.0/24", "network-address"),
    ("name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.255/24", "broadcast-address"),
    ("name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.9/24,gw=10.0.0.9", "gateway-address"),
    ("name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.9/24,gw=10.0.5.1", "gateway-outside-subnet"),
    ("name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.300/24", "malformed"),
    ("name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09,ip=10.0.0.9/24", "malformed"),
    ("bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.9/24", "malformed"),
    ("name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,ip=10.0.0.9/24,tag=9999", "malformed"),
])
def test_bad_addresses_and_malformed_lines(net0, kind):
    g = parse_config(f"hostname: x\nnet0: {net0}\n", 960, "lxc", "pve1")
    found = audit.audit([g])
    assert [(f.kind, f.vmids) for f in found] == [(kind, [960])], found


def test_malformed_qemu_and_unreadable_lines():
    vm = parse_config("name: vm\nnet0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\nipconfig0: ip=10.0.30.5\n",
                      120, "qemu", "pve2")
    ct = parse_config("hostname: x\nthis is not a config line\n", 961, "lxc", "pve1")
    found = audit.audit([vm, ct])
    assert kinds(found) == [("malformed", (120,)), ("malformed", (961,))]
    assert "ipconfig" in found[0].detail or "ip=" in found[0].detail


# -- the command, over a files tree --------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "etc-pve"
    labmod.write_tree(str(root), "pve1", fixture_configs())
    conf = tmp_path / "phoenix-hook.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {root}\nnode = pve1\n")
    return root, str(conf)


def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_clean(tree, capsys):
    _root, conf = tree
    code, out, _err = run_cli(["--config", conf, "audit"], capsys)
    assert code == 0 and out.strip() == "no findings (13 guests, 13 NICs)"


def test_cli_findings_table_and_json(tree, capsys):
    root, conf = tree
    cfg = fixture_configs()
    labmod.write_tree(str(root), "pve2", {958: cfg[951]})
    labmod.write_tree(str(root), "pve2", {120: "name: vm120\nnet0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\n"
                                                "ipconfig0: ip=10.0.0.157/24,gw=10.0.0.1\n"
                                                "hookscript: local:snippets/phoenix-hook.py\n"}, kind="qemu")
    (root / ".members").write_text(json.dumps({"nodename": "pve1", "version": 5, "cluster": {"name": "phx"},
                                               "nodelist": {"pve1": {"id": 1, "online": 1, "ip": "10.0.0.99"},
                                                            "pve2": {"id": 2, "online": 1, "ip": "10.0.0.98"}}}))
    code, out, _err = run_cli(["--config", conf, "audit"], capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["KIND", "GUESTS", "ADDRESS", "DETAIL"]
    assert lines[-1] == "4 findings (15 guests, 15 NICs)"
    code, out, _err = run_cli(["--config", conf, "audit", "--json"], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "found" and (doc["guests"], doc["nics"]) == (15, 15)
    assert [(f["kind"], f["vmids"]) for f in doc["findings"]] == [
        ("duplicate-ip", [120, 957]), ("duplicate-ip", [951, 958]), ("duplicate-mac", [951, 958]),
        ("node-address", [910])]
    f = doc["findings"][0]
    assert set(f) == {"kind", "vmids", "ip", "mac", "detail", "guests"}
    assert {g["node"] for g in f["guests"]} == {"pve1", "pve2"}


def test_node_addresses_from_corosync_conf(tmp_path):
    (tmp_path / "nodes").mkdir()
    (tmp_path / "corosync.conf").write_text(
        "nodelist {\n  node {\n    name: pve1\n    nodeid: 1\n    ring0_addr: 10.0.0.2\n  }\n"
        "  node {\n    name: pve2\n    nodeid: 2\n    ring0_addr: pve2.lan\n    ring1_addr: 10.9.0.3\n  }\n}\n")
    assert sources.node_addresses(FileSource(str(tmp_path), "pve1")) == {"10.0.0.2": "pve1", "10.9.0.3": "pve2"}
    (tmp_path / ".members").write_text("{broken")
    assert sources.node_addresses(FileSource(str(tmp_path), "pve1")) == {"10.0.0.2": "pve1", "10.9.0.3": "pve2"}


def test_a_tree_without_nodes_is_an_error_not_a_clean_cluster(tmp_path, capsys):
    """pve_root pointing at the wrong directory once gave "no findings (0 guests)"."""
    root = tmp_path / "not-pve"
    (root / "lxc").mkdir(parents=True)                 # a directory, but no nodes/ in it
    src = FileSource(str(root), "pve1")
    for call in (src.guests, src.config_files, lambda: src.config_files(node="pve1")):
        with pytest.raises(SourceError, match=r"not-pve/nodes does not exist; is this a Proxmox VE node"):
            call()
    conf = tmp_path / "s.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {root}\nnode = pve1\n")
    for cmd in (["audit"], ["reservations", "--format", "csv"], ["check", "--all"]):
        code, out, err = run_cli(["--config", str(conf), *cmd], capsys)
        assert code == 3 and out == "", (cmd, out, err)
        assert err.startswith("phoenix-hook: could not check: ") and "nodes does not exist" in err
        assert len(err.strip().splitlines()) == 1
    # a tree with nodes/ but no guests yet is still a clean, empty cluster
    (root / "nodes" / "pve1").mkdir(parents=True)
    code, out, _err = run_cli(["--config", str(conf), "audit"], capsys)
    assert code == 0 and out.strip() == "no findings (0 guests, 0 NICs)"

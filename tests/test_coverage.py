"""audit's coverage findings: unprotected guests, hookscripts missing on a node (coverage.py),
pure and through the API in PVE's shapes."""
from __future__ import annotations

import json

import responses
from responses import matchers

from phoenix_hook.checks import coverage
from phoenix_hook.pve.guest import parse_config
from test_pveapi import BASE, CONFIGS, RESOURCES, STATUS, PveFailure, conf_file, run_cli, serve

OURS = "local:snippets/phoenix-hook.py"


def ct(vmid, net="name=eth0,bridge=vmbr0,ip=10.0.0.{n}/24,type=veth", hook=None, node="pve1", extra=""):
    text = f"hostname: ct{vmid}\nnet0: {net.format(n=vmid % 250)}\n" + extra
    if hook:
        text += f"hookscript: {hook}\n"
    return parse_config(text, vmid, "lxc", node)


def test_is_ours_on_any_storage_only_by_its_file_name():
    assert coverage.is_ours(OURS) and coverage.is_ours("cephfs:snippets/phoenix-hook.py")
    for other in (None, "", "phoenix-hook.py", "local:snippets/my hook.sh", "local:snippets/phoenix-hook.py.bak",
                  "local:snippets/phoenix-hook.sh"):
        assert not coverage.is_ours(other), other


def test_unprotected_names_each_guest_and_the_fix():
    guests = [ct(101, hook=OURS), ct(102), ct(103, hook="local:snippets/backup.sh"),
              ct(104, extra="template: 1\n"), ct(105, net="name=eth0,bridge=vmbr0,ip=dhcp"),
              parse_config("name: vm\nnet0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\n"
                           "ipconfig0: ip=10.0.0.120/24\n", 120, "qemu", "pve2")]
    found = {f.vmids[0]: f for f in coverage.unprotected(guests)}
    assert sorted(found) == [102, 103, 120]          # 101 ours, 104 a template, 105 DHCP only
    assert "no hookscript" in found[102].detail and "./install.sh --attach 102" in found[102].detail
    assert "local:snippets/backup.sh" in found[103].detail and "--chain" in found[103].detail
    assert "--vms" in found[120].detail and "pve2" in found[120].detail
    assert found[102].ip == "10.0.0.102" and found[102].kind == "unprotected"


def test_missing_snippets_names_the_node_and_who_cannot_start_or_migrate():
    guests = [ct(101, hook=OURS, node="pve1"), ct(102, hook=OURS, node="pve2"), ct(103, hook=OURS, node="pve3")]
    have = {("pve1", "local"): {OURS}, ("pve2", "local"): set(), ("pve3", "local"): None}
    found = coverage.missing_snippets(guests, ["pve1", "pve2", "pve3"], lambda n, s: have[(n, s)])
    assert len(found) == 1                            # pve3 could not say: not judged
    [f] = found
    assert f.kind == "hookscript-missing" and f.vmids == [101, 102, 103]
    assert "does not exist on node pve2" in f.detail
    assert "CT 102 cannot start" in f.detail and "CT 101, CT 103 cannot migrate there" in f.detail
    assert "install.sh on pve2" in f.detail


@responses.activate
def test_audit_over_the_api_finds_a_node_without_the_snippet(tmp_path, capsys):
    serve(responses, snippets={("pve1", "cephfs"): ["cephfs:snippets/phoenix-hook.py"],
                               ("pve2", "cephfs"): []})
    code, out, err = run_cli(["--config", conf_file(tmp_path), "audit", "--json"], capsys)
    assert code == 1, err
    [f] = json.loads(out)["findings"]
    assert (f["kind"], f["vmids"]) == ("hookscript-missing", [120, 951, 952])
    assert "node pve2" in f["detail"] and "VM 120, CT 952 cannot start; CT 951 cannot migrate there" in f["detail"]


@responses.activate
def test_a_storage_the_node_does_not_have_counts_as_missing(tmp_path, capsys):
    serve(responses, snippets={("pve1", "cephfs"): ["cephfs:snippets/phoenix-hook.py"]})
    responses.add(PveFailure(f"{BASE}/nodes/pve2/storage/cephfs/content?content=snippets", 500,
                             "storage 'cephfs' does not exist"))
    code, out, err = run_cli(["--config", conf_file(tmp_path), "audit", "--json"], capsys)
    assert code == 1 and "Traceback" not in err, err
    assert [f["kind"] for f in json.loads(out)["findings"]] == ["hookscript-missing"]


@responses.activate
def test_a_node_that_cannot_say_is_left_out_with_a_note(tmp_path, capsys):
    serve(responses, snippets={("pve1", "cephfs"): ["cephfs:snippets/phoenix-hook.py"]})
    responses.add(responses.GET, f"{BASE}/nodes/pve2/storage/cephfs/content", status=595,
                  json={"data": None}, match=[matchers.query_param_matcher({"content": "snippets"})])
    code, out, err = run_cli(["--config", conf_file(tmp_path), "audit", "--json"], capsys)
    assert code == 0 and json.loads(out)["findings"] == [], (out, err)
    assert "node pve2 did not list storage cephfs" in err


def test_fixture_shapes_are_used():
    # the API shapes come from test_pveapi; keep them in step
    assert RESOURCES and STATUS and all("hookscript" in c for c in CONFIGS.values())

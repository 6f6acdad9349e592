"""report.py: verdict order, exit codes, the JSON contract, task-log lines, the table."""
from __future__ import annotations

import json

import pytest

from phoenix_hook.checks.report import Finding, GuestResult, NicResult, Report, task_log_lines, table, worst

SQUAT = "16:0d:a0:c0:b9:1b"


def arp_conflict():
    return Finding(source="arp", mac=SQUAT, vendor=None, detail=f"{SQUAT} answered our probe",
                   line=f"is in use by {SQUAT} (vendor unknown, locally administered)")


def nic(verdict, key="net0", ip="10.0.0.151", bridge="vmbr0", vlan=None, note="", conflicts=(), warnings=()):
    return NicResult(nic=key, ip=ip, bridge=bridge, vlan=vlan, verdict=verdict, note=note,
                     conflicts=list(conflicts), warnings=list(warnings))


# -- verdicts and exit codes ------------------------------------------------

@pytest.mark.parametrize("vs, expected", [
    ([], "skipped"),
    (["skipped"], "skipped"),
    (["skipped", "clear"], "clear"),
    (["clear", "error", "skipped"], "error"),
    (["error", "conflict", "clear"], "conflict"),
    (["conflict", "skipped"], "conflict"),
])
def test_worst(vs, expected):
    assert worst(vs) == expected
    assert worst(reversed(vs)) == expected


@pytest.mark.parametrize("verdicts, code", [
    ([["clear"], ["clear", "skipped"]], 0),
    ([["skipped"]], 0),
    ([["clear"], ["conflict"]], 1),
    ([["error"], ["clear"]], 3),
    ([["error"], ["conflict"]], 1),        # a found conflict outranks a failed check
])
def test_report_verdict_and_exit_code(verdicts, code):
    r = Report([GuestResult(100 + i, "lxc", None, [nic(v, key=f"net{j}") for j, v in enumerate(vs)])
                for i, vs in enumerate(verdicts)])
    assert r.exit_code == code


def test_guest_error_makes_guest_error():
    g = GuestResult(951, "lxc", "ct", [nic("clear")], error="cannot read /etc/pve/nodes/pve1/lxc/951.conf")
    assert g.verdict == "error"
    g.nics.append(nic("conflict", key="net1", conflicts=[arp_conflict()]))
    assert g.verdict == "conflict"
    assert GuestResult(7, "lxc", None, [], error="boom").verdict == "error"
    assert Report([]).verdict == "skipped" and Report([]).exit_code == 0


# -- JSON contract (issue 2, "--json") -------------------------------------

def test_json_shape():
    warn = Finding(source="config", vmid=952, node="pve2",
                   detail="CT 952 (other) on node pve2 is also configured with 10.0.0.151 (net0)")
    host = Finding(source="host", detail="10.0.0.152 is configured on this host itself",
                   line="is one of this host's own addresses")
    r = Report([
        GuestResult(951, "lxc", "vllm", [nic("conflict", conflicts=[arp_conflict()], warnings=[warn]),
                                        nic("conflict", key="net1", ip="10.0.0.152", vlan=20,
                                            conflicts=[host])]),
        GuestResult(953, "lxc", None, [nic("skipped", ip=None, note="ip=dhcp, no static IPv4 address")]),
    ])
    doc = json.loads(r.json())
    assert doc["verdict"] == "conflict"
    assert set(doc) >= {"verdict", "guests"}
    g = doc["guests"][0]
    assert {"vmid", "type", "name", "verdict", "nics"} <= set(g)
    assert (g["vmid"], g["type"], g["name"], g["verdict"]) == (951, "lxc", "vllm", "conflict")
    n0, n1 = g["nics"]
    assert {"nic", "ip", "bridge", "vlan", "verdict", "conflicts", "warnings"} <= set(n0)
    assert (n0["nic"], n0["ip"], n0["bridge"], n0["vlan"], n0["verdict"]) == (
        "net0", "10.0.0.151", "vmbr0", None, "conflict")
    assert n0["conflicts"] == [{"source": "arp", "mac": SQUAT, "vendor": None,
                                "detail": f"{SQUAT} answered our probe"}]
    assert n0["warnings"] == [{"source": "config", "vmid": 952, "node": "pve2", "detail": warn.detail}]
    assert n1["vlan"] == 20 and n1["conflicts"][0]["source"] == "host" and n1["conflicts"][0]["mac"] is None
    g2 = doc["guests"][1]
    assert g2["name"] is None and g2["verdict"] == "skipped"
    assert g2["nics"][0]["ip"] is None and g2["nics"][0]["conflicts"] == []
    for v in (doc["verdict"], g["verdict"], n0["verdict"], g2["verdict"]):
        assert v in ("clear", "conflict", "skipped", "error")


def test_json_is_one_object():
    text = Report([GuestResult(1, "lxc", "a", [nic("clear")])]).json()
    assert isinstance(json.loads(text), dict)


# -- task-log lines -----------------------------------------------------------

def test_task_log_conflict_line_matches_issue_example():
    g = GuestResult(951, "lxc", "vllm", [nic("conflict", conflicts=[arp_conflict()])])
    assert task_log_lines(g, action="start refused") == [
        "phoenix-hook: CT 951 net0 10.0.0.151 is in use by 16:0d:a0:c0:b9:1b "
        "(vendor unknown, locally administered) on vmbr0 - start refused"]


def test_task_log_warn_mode_and_vlan():
    g = GuestResult(951, "lxc", "vllm", [nic("conflict", vlan=20, conflicts=[arp_conflict()])])
    (line,) = task_log_lines(g, action="starting anyway (mode = warn)", warn=True)
    assert line.startswith("WARNING: phoenix-hook: CT 951 net0 10.0.0.151 is in use by")
    assert line.endswith("on vmbr0 VLAN 20 - starting anyway (mode = warn)")


def test_task_log_conflict_falls_back_to_detail():
    f = Finding(source="arp", mac=SQUAT, detail=f"{SQUAT} answered our probe")
    (line,) = task_log_lines(GuestResult(100, "qemu", None, [nic("conflict", conflicts=[f])]))
    assert line == f"phoenix-hook: VM 100 net0 10.0.0.151 {SQUAT} answered our probe on vmbr0"


def test_task_log_error_skipped_clear():
    g = GuestResult(951, "lxc", None, [
        nic("error", note="bridge vmbr9 does not exist on this host", bridge="vmbr9"),
        nic("error", key="net1", ip=None, note="net1 of CT 951: hwaddr='zz' is not a MAC address"),
        nic("skipped", key="net2", ip=None, note="ip=dhcp, no static IPv4 address to probe"),
        nic("clear", key="net3", ip="10.0.0.153", note="no answer in 1000 ms, 3 probes"),
        nic("clear", key="net4", ip="10.0.0.154", vlan=30),
    ])
    assert task_log_lines(g) == [
        "phoenix-hook: CT 951 net0 10.0.0.151: could not check: bridge vmbr9 does not exist on this host",
        "phoenix-hook: CT 951 net1: could not check: net1 of CT 951: hwaddr='zz' is not a MAC address",
        "phoenix-hook: CT 951 net2: ip=dhcp, no static IPv4 address to probe",
        "phoenix-hook: CT 951 net3 10.0.0.153 is free on vmbr0 (no answer in 1000 ms, 3 probes)",
        "phoenix-hook: CT 951 net4 10.0.0.154 is free on vmbr0 VLAN 30",
    ]


def test_task_log_notes_guest_error_and_warnings():
    warn = Finding(source="config", vmid=952, node="pve2", detail="CT 952 on node pve2 is also configured with 10.0.0.151 (net0)")
    g = GuestResult(951, "lxc", None, [nic("clear", warnings=[warn])],
                    notes=["has pending network changes: checking the config it will start with"],
                    error="the deadline passed")
    lines = task_log_lines(g)
    assert lines[0] == ("phoenix-hook: CT 951 has pending network changes: checking the config it "
                        "will start with")
    assert lines[1] == "phoenix-hook: CT 951: the deadline passed"
    assert lines[-1] == ("WARNING: phoenix-hook: CT 951 net0 10.0.0.151: CT 952 on node pve2 is also "
                         "configured with 10.0.0.151 (net0)")


def test_task_log_lines_are_single_lines():
    g = GuestResult(951, "lxc", None, [nic("conflict", conflicts=[arp_conflict()]), nic("clear", key="net1")])
    assert all("\n" not in x for x in task_log_lines(g, action="start refused"))


# -- table ---------------------------------------------------------------------

def _report():
    return Report([
        GuestResult(951, "lxc", "vllm", [nic("conflict", conflicts=[arp_conflict()]),
                                        nic("clear", key="net1", ip="10.0.0.152", vlan=20,
                                            note="no answer in 1000 ms, 3 probes")]),
        GuestResult(952, "lxc", "gone", [], error="cannot read its config"),
        GuestResult(953, "lxc", None, [nic("skipped", ip=None, bridge=None, note="no IPv4 address configured")]),
    ])


def test_table_plain_without_colour():
    t = table(_report())
    assert "\033[" not in t
    lines = t.splitlines()
    assert lines[0].split() == ["GUEST", "NIC", "IP", "BRIDGE", "VERDICT", "DETAIL"]
    assert any("CT 951 vllm" in x and "10.0.0.151" in x and "conflict" in x and "is in use by" in x for x in lines)
    assert any("net1" in x and "vmbr0 VLAN 20" in x and "clear" in x for x in lines)
    assert any("CT 952 gone" in x and "error" in x and "cannot read its config" in x for x in lines)
    assert any(x.startswith("CT 953") and " - " in x and "skipped" in x for x in lines)
    assert lines[-1] == "verdict: conflict"
    # columns line up: VERDICT column starts at the same offset on every row
    col = lines[0].index("VERDICT")
    for x in lines[1:4]:
        assert x[col:].split()[0] in ("conflict", "clear", "error", "skipped")


def test_table_colour_when_asked():
    t = table(_report(), color=True)
    assert "\033[31;1mconflict" in t and "\033[32mclear" in t and "\033[0m" in t
    assert "\033[" not in t.splitlines()[0]               # header stays plain

"""Lab tests of `phoenix-hook check` (python -m phoenix_hook check ... inside the PVE namespace).

The JSON shape and the exit codes are a contract (README "JSON output",
"Exit codes"); these tests pin them against real kernels in lab namespaces.
"""
from __future__ import annotations

import json

SQUAT_MAC = "16:0d:a0:c0:b9:1b"
GUEST_KEYS = {"vmid", "type", "name", "verdict", "nics"}
NIC_KEYS = {"nic", "family", "ip", "bridge", "vlan", "verdict", "conflicts", "warnings"}
CONFLICT_KEYS = {"source", "mac", "vendor", "detail"}
WARNING_KEYS = {"source", "vmid", "node", "detail"}
VERDICTS = {"clear", "conflict", "skipped", "error"}


def check_shape(doc: dict) -> None:
    """Every key the issue promises, with the promised types."""
    assert set(doc) >= {"verdict", "guests"} and doc["verdict"] in VERDICTS
    for g in doc["guests"]:
        assert set(g) >= GUEST_KEYS, g
        assert isinstance(g["vmid"], int) and g["type"] == "lxc" and g["verdict"] in VERDICTS
        assert g["name"] is None or isinstance(g["name"], str)
        for n in g["nics"]:
            assert set(n) >= NIC_KEYS, n
            assert n["verdict"] in VERDICTS and (n["vlan"] is None or isinstance(n["vlan"], int))
            for c in n["conflicts"]:
                assert set(c) == CONFLICT_KEYS and c["source"] in ("arp", "host"), c
            for w in n["warnings"]:
                assert set(w) == WARNING_KEYS and w["source"] == "config" and isinstance(w["vmid"], int), w


def check_json(run_cli, lab, *args):
    code, out, err = run_cli(lab, "check", *args, "--json")
    assert "Traceback" not in err, err
    doc = json.loads(out)                 # one JSON object, nothing else on stdout
    check_shape(doc)
    return code, doc


def guest_of(doc, vmid):
    return next(g for g in doc["guests"] if g["vmid"] == vmid)


def test_check_clear_and_conflict(lab, pve, run_cli):
    pve.guest(951)
    pve.guest(955)
    lab.add_host("gw", "10.0.0.1/24")
    lab.add_host("rogue", "10.0.0.155/24", mac=SQUAT_MAC)

    code, doc = check_json(run_cli, lab, "951")
    assert code == 0, doc
    assert doc["verdict"] == "clear"
    assert [(g["vmid"], g["type"], g["name"], g["verdict"]) for g in doc["guests"]] == \
           [(951, "lxc", "embed-api", "clear")]
    n = doc["guests"][0]["nics"][0]
    assert (n["nic"], n["ip"], n["bridge"], n["vlan"], n["verdict"], n["conflicts"], n["warnings"]) == \
           ("net0", "10.0.0.151", "vmbr0", None, "clear", [], [])

    code, doc = check_json(run_cli, lab, "955")
    assert code == 1, doc
    assert doc["verdict"] == "conflict"
    c = doc["guests"][0]["nics"][0]["conflicts"]
    assert [(x["source"], x["mac"], x["vendor"]) for x in c] == [("arp", SQUAT_MAC, None)]
    assert c[0]["detail"] == f"{SQUAT_MAC} answered our probe"

    # Both at once: the worst verdict wins, and the clear one is still reported clear.
    code, doc = check_json(run_cli, lab, "951", "955")
    assert code == 1
    assert [(g["vmid"], g["verdict"]) for g in doc["guests"]] == [(951, "clear"), (955, "conflict")]


def test_check_all_probes_every_container_of_this_node(lab, pve, run_cli):
    for vmid in pve.fixture:
        pve.guest(vmid)
    pve.guest(960, node="pve2", spec_vmid=956)       # another node's guest: not ours to probe
    lab.add_host("gw", "10.0.0.1/24")
    lab.add_host("rogue", "10.0.0.153/24", mac=SQUAT_MAC)
    code, doc = check_json(run_cli, lab, "--all")
    assert code == 1, doc
    assert doc["verdict"] == "conflict"
    assert sorted(g["vmid"] for g in doc["guests"]) == sorted(pve.fixture)
    verdicts = {g["vmid"]: g["verdict"] for g in doc["guests"]}
    assert verdicts.pop(953) == "conflict"
    assert set(verdicts.values()) == {"clear"}, verdicts      # check does not stop at the first conflict
    # 956 and 960 share 10.0.0.156 on vmbr0: a config warning naming the other node's guest.
    w = guest_of(doc, 956)["nics"][0]["warnings"]
    assert [(x["vmid"], x["node"]) for x in w] == [(960, "pve2")]


def test_check_host_address_and_exit_codes(lab, pve, run_cli):
    pve.guest(951)
    pve.guest(952, nets={"net0": "name=eth0,bridge=vmbr9,hwaddr=52:54:00:67:89:B2,ip=10.0.0.152/24,type=veth"})
    lab.add_host_address("10.0.0.151/24")
    code, doc = check_json(run_cli, lab, "951")
    assert code == 1
    c = doc["guests"][0]["nics"][0]["conflicts"]
    assert [(x["source"], x["mac"], x["vendor"]) for x in c] == [("host", None, None)]
    # could not check: exit 3, verdict error, the reason in the note
    code, doc = check_json(run_cli, lab, "952")
    assert code == 3
    n = doc["guests"][0]["nics"][0]
    assert n["verdict"] == "error" and "vmbr9" in n["note"]
    # bad usage: exit 2, one line, no traceback (no arguments: the usage line first)
    for args in (["abc"], ["999"], []):
        code, out, err = run_cli(lab, "check", *args)
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        if not args:
            assert lines[0].startswith("usage: phoenix-hook check"), err
            lines = [x for x in lines if x.startswith("phoenix-hook:")]
        assert "Traceback" not in err and len(lines) <= 2, err
    code, out, err = run_cli(lab, "check", "999")
    assert "999" in err


def test_check_pending_network_changes(lab, pve, run_cli):
    pending = ("\n[pve:pending]\nnet0: name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=52:54:00:67:89:B2,"
               "ip=10.0.0.162/24,type=veth\n")
    pve.guest(952, extra=pending)
    lab.add_host("gw", "10.0.0.1/24")
    lab.add_host("rogue", "10.0.0.162/24", mac=SQUAT_MAC)
    code, doc = check_json(run_cli, lab, "952")
    assert code == 1, doc
    g = doc["guests"][0]
    assert any("pending network changes" in x for x in g["notes"]), g
    n = g["nics"][0]
    assert (n["ip"], n["verdict"]) == ("10.0.0.162", "conflict")
    # The human table says so too.
    code, out, _err = run_cli(lab, "check", "952")
    assert code == 1 and "pending network changes" in out and "10.0.0.162" in out

"""preflight: the Python API, the CLI, probes through a fake wire, and the real thing in a lab.

Unit tests never reach a real interface: they run with probe=False / --no-probe,
or with a fake wire (check.run_check's wire_factory seam). Lab tests run
`python -m phoenix_hook preflight` and the hookscript inside a namespace lab
(conftest.py `lab`), removed afterwards also on failure.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LAB_PLAN

import phoenix_hook
from phoenix_hook.net import arp, lab as labmod
from phoenix_hook.cli import main as cli
from phoenix_hook.checks.check import HostFacts
from phoenix_hook.net.hostnet import Link
from phoenix_hook.checks.plan import PlanError
from phoenix_hook.pve.files import FileSource
from phoenix_hook.settings import Settings

REPO = Path(__file__).resolve().parents[1]
FIXTURE = LAB_PLAN        # the deployment's plan shape, guests of our own (tests/data)
NODE = "pve1"
BR_MAC = "02:00:00:00:00:01"
SQUAT_MAC = "16:0d:a0:c0:b9:1b"


def ct(vmid, ip, mac, name=None, extra=""):
    return (f"hostname: {name or f'ct{vmid}'}\n"
            f"net0: name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr={mac},ip={ip},type=veth\n{extra}")


class TreeSource(FileSource):
    """A FileSource over a tmp tree that also says which guests run (as ApiSource.status does)."""

    def __init__(self, root, running=()):
        super().__init__(str(root), NODE)
        self.running = set(running)

    def status(self, vmid):
        return "running" if vmid in self.running else "stopped"


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "etc-pve"
    (root / "nodes" / NODE / "lxc").mkdir(parents=True)
    return root


def write(root, vmid, text, kind="lxc", node=NODE):
    labmod.write_tree(str(root), node, {vmid: text}, kind=kind)


def settings_for(root, **kw):
    return Settings(pve_root=str(root), node=NODE, **kw)


def conf(tmp_path, root, extra=""):
    p = tmp_path / "phoenix-hook.conf"
    p.write_text(f"[phoenix-hook]\npve_root = {root}\nnode = {NODE}\nlog_file = {tmp_path}/log.jsonl\nrun_dir = {tmp_path}/run\n"
                 f"probe_timeout_ms = 100\n{extra}")
    return str(p)


class FakeWire:
    """Answers probes for `answers` {ip: mac} with ARP replies; records what was sent."""

    def __init__(self, answers):
        self.answers = answers
        self.sent = []
        self.queue = []

    def __call__(self, ifnames):
        self.ifnames = set(ifnames)
        return self

    def send(self, ifname, frame):
        pkt = arp.parse(frame)
        self.sent.append((ifname, pkt.target_ip))
        mac = self.answers.get(pkt.target_ip)
        if mac:
            self.queue.append((ifname, arp.build_reply(mac, pkt.target_ip, pkt.sender_mac, "0.0.0.0"), None))

    def receive(self, timeout):
        if self.queue:
            out, self.queue = self.queue, []
            return out
        time.sleep(min(timeout, 0.005))
        return []

    def close(self):
        pass


FACTS = HostFacts(links={"vmbr0": Link("vmbr0", BR_MAC, up=True, noarp=False, carrier=True,
                                       is_bridge=True, vlan_filtering=False)},
                  local_ips=frozenset({"10.0.0.2"}), macs=frozenset({BR_MAC}))


# -- the Python API ----------------------------------------------------------------

def test_python_api_without_probing(tree):
    write(tree, 300, ct(300, "10.0.0.152/24", "BC:24:11:00:03:00", "squatter"))
    report = phoenix_hook.preflight(str(FIXTURE), [951, 952], settings=settings_for(tree),
                                    source=FileSource(str(tree), NODE), probe=False)
    assert report.exit_code == 1 and report.verdict == "conflict"
    doc = report.to_json()
    assert set(doc) == {"verdict", "plan"}
    by = {g["vmid"]: g for g in doc["plan"]}
    assert by[951]["verdict"] == "clear" and by[951]["nics"][0]["note"].startswith("config-level checks only")
    [c] = by[952]["nics"][0]["conflicts"]
    assert (c["kind"], c["vmids"], c["source"]) == ("ip-in-use", [952, 300], "config")
    assert "CT 300 (squatter)" in c["detail"]
    assert [f.kind for f in report.findings] == ["ip-in-use"]
    assert "CT 952" in report.table() and "verdict: conflict" in report.table()


def test_python_api_accepts_parsed_json_and_entries(tree):
    doc = json.loads(FIXTURE.read_text())
    r1 = phoenix_hook.preflight(doc, settings=settings_for(tree), source=FileSource(str(tree), NODE), probe=False)
    assert r1.exit_code == 0 and len(r1.guests) == 13
    generic = [{"vmid": 960, "nic": "net0", "bridge": "vmbr0", "ip": "10.0.0.160/24", "mac": "52:54:00:00:09:60"},
               {"vmid": 961, "nic": "net0", "bridge": "vmbr0", "ip": "10.0.0.160/24", "mac": "52:54:00:00:09:60"}]
    r2 = phoenix_hook.preflight(generic, settings=settings_for(tree), source=FileSource(str(tree), NODE),
                                probe=False)
    kinds = sorted(c["kind"] for g in r2.to_json()["plan"] for n in g["nics"] for c in n["conflicts"])
    assert kinds == ["plan-duplicate-ip"] * 2 + ["plan-duplicate-mac"] * 2
    with pytest.raises(PlanError, match="guest 999 is not in plan"):
        phoenix_hook.preflight(doc, [999], settings=settings_for(tree), source=FileSource(str(tree), NODE),
                               probe=False)


def test_package_import_stays_lazy_and_api_works_in_any_import_order():
    code = ("import sys, phoenix_hook\n"
            "assert [m for m in sys.modules if m.startswith('phoenix_hook.')] == [], sys.modules.keys()\n"
            "import phoenix_hook.checks.preflight as m\n"            # the module first...
            "assert callable(phoenix_hook.preflight) and m.preflight.__name__ == 'preflight'\n"
            "from phoenix_hook import preflight\n"
            "assert callable(preflight)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# -- probing through a fake wire --------------------------------------------------

def test_wire_conflict_names_the_mac_and_its_guest(tree):
    # Someone (the MAC of stopped CT 400) holds 951's address; 953 is free.
    write(tree, 400, ct(400, "dhcp", SQUAT_MAC, "old-clone"))
    wire = FakeWire({"10.0.0.151": SQUAT_MAC})
    report = phoenix_hook.preflight(str(FIXTURE), [951, 953], settings=settings_for(tree),
                                    source=TreeSource(tree), facts=FACTS, wire_factory=wire,
                                    timeout_ms=100, describe=lambda mac: (None, "vendor unknown"))
    assert report.exit_code == 1
    by = {g["vmid"]: g["nics"][0] for g in report.to_json()["plan"]}
    [c] = by[951]["conflicts"]
    assert (c["kind"], c["source"], c["mac"], c["vmids"]) == ("in-use-on-wire", "arp", SQUAT_MAC, [951, 400])
    assert "CT 400 (old-clone)" in c["detail"]
    assert by[953]["verdict"] == "clear" and by[953]["note"].startswith("no answer in")
    assert {ip for _i, ip in wire.sent} == {"10.0.0.151", "10.0.0.153"}
    assert wire.ifnames == {"vmbr0"}


def test_running_guest_answering_from_its_own_planned_mac_is_not_a_conflict(tree):
    write(tree, 952, ct(952, "10.0.0.152/24", "52:54:00:67:89:B2", "vector-db"))
    answers = {"10.0.0.152": "52:54:00:67:89:b2"}
    running = phoenix_hook.preflight(str(FIXTURE), [952], settings=settings_for(tree),
                                     source=TreeSource(tree, running={952}), facts=FACTS,
                                     wire_factory=FakeWire(answers), timeout_ms=100)
    assert running.exit_code == 0, running.json()
    # Stopped, yet its MAC answers: another copy of it is up somewhere.
    stopped = phoenix_hook.preflight(str(FIXTURE), [952], settings=settings_for(tree),
                                     source=TreeSource(tree), facts=FACTS,
                                     wire_factory=FakeWire(answers), timeout_ms=100,
                                     describe=lambda mac: (None, "vendor unknown"))
    [c] = stopped.findings
    assert stopped.exit_code == 1 and "own MAC" in c.line


def test_host_address_is_found_without_probing_it(tree):
    plan = [{"vmid": 960, "bridge": "vmbr0", "ip": "10.0.0.2/24", "mac": "52:54:00:00:09:60"}]
    wire = FakeWire({})
    report = phoenix_hook.preflight(plan, settings=settings_for(tree), source=TreeSource(tree),
                                    facts=FACTS, wire_factory=wire, timeout_ms=100)
    [c] = report.findings
    assert c.kind == "host-address" and report.exit_code == 1
    assert wire.sent == []


def test_generic_entry_without_bridge_is_probed_on_vmbr0(tree):
    """No "bridge" in a generic entry once meant "no bridge, nothing to probe on": skipped, exit 0,
    with a squatter on the address. PVE's default bridge is assumed, and the report says so."""
    plan = [{"vmid": 960, "ip": "10.0.0.160/24"}]
    wire = FakeWire({"10.0.0.160": SQUAT_MAC})
    report = phoenix_hook.preflight(plan, settings=settings_for(tree), source=TreeSource(tree),
                                    facts=FACTS, wire_factory=wire, timeout_ms=100,
                                    describe=lambda mac: (None, "vendor unknown"))
    assert report.exit_code == 1, report.json()
    assert ("vmbr0", "10.0.0.160") in wire.sent
    g = report.to_json()["plan"][0]
    assert g["nics"][0]["bridge"] == "vmbr0" and g["nics"][0]["conflicts"][0]["mac"] == SQUAT_MAC
    assert g["notes"] == ["net0: the plan names no bridge: probed on vmbr0, PVE's default bridge "
                          "(add \"bridge\" to the entry if it is another)"]
    assert "CT 960: net0: the plan names no bridge" in report.table()
    # a free address: clear, with the note; without probing: the note too
    report = phoenix_hook.preflight(plan, settings=settings_for(tree), source=TreeSource(tree),
                                    facts=FACTS, wire_factory=FakeWire({}), timeout_ms=100)
    g = report.to_json()["plan"][0]
    assert report.exit_code == 0 and g["nics"][0]["verdict"] == "clear" and len(g["notes"]) == 1
    g = phoenix_hook.preflight(plan, settings=settings_for(tree), source=TreeSource(tree),
                               probe=False).to_json()["plan"][0]
    assert g["nics"][0]["bridge"] == "vmbr0"
    # nothing was probed, so the note must not say "probed on"
    assert g["notes"] == ["net0: the plan names no bridge: assumed vmbr0, PVE's default bridge "
                          "(add \"bridge\" to the entry if it is another)"]


def test_missing_bridge_is_could_not_check(tree):
    plan = [{"vmid": 960, "bridge": "vmbr7", "ip": "10.0.0.160/24", "mac": "52:54:00:00:09:60"}]
    report = phoenix_hook.preflight(plan, settings=settings_for(tree), source=TreeSource(tree),
                                    facts=FACTS, wire_factory=FakeWire({}), timeout_ms=100)
    assert report.exit_code == 3
    assert "bridge vmbr7 does not exist" in report.guests[0].nics[0].note


# -- the CLI ------------------------------------------------------------------------

def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_clean_plan_exit_0(tmp_path, tree, capsys):
    code, out, err = run_cli(["--config", conf(tmp_path, tree), "preflight", str(FIXTURE), "--no-probe"], capsys)
    assert code == 0, err
    assert "verdict: clear" in out and "CT 957 inference" in out


def test_cli_json_shape_and_the_outage(tmp_path, tree, capsys):
    # The outage: DHCP pool 10.0.0.100-199 over the plan's 950..957, and a
    # device configured as CT 300 already on 10.0.0.151.
    write(tree, 300, ct(300, "10.0.0.151/24", "BC:24:11:00:03:00", "squatter"))
    c = conf(tmp_path, tree, "dhcp_ranges = 10.0.0.100-10.0.0.199\n")
    code, out, err = run_cli(["--config", c, "preflight", str(FIXTURE), "951", "910", "--no-probe", "--json"], capsys)
    assert code == 1, err
    doc = json.loads(out)
    assert doc["verdict"] == "conflict" and [g["vmid"] for g in doc["plan"]] == [910, 951]
    g910, g951 = doc["plan"]
    assert g910["verdict"] == "clear"
    nic = g951["nics"][0]
    assert set(nic) == {"nic", "family", "ip", "bridge", "vlan", "verdict", "note", "conflicts", "warnings"}
    assert {(x["kind"], tuple(x["vmids"])) for x in nic["conflicts"]} == {
        ("ip-in-use", (951, 300)), ("dhcp-pool", (951,))}


@pytest.mark.parametrize("args,text,needle", [
    (["PLAN"], "{not json", "not valid JSON (line 1 column 2"),
    (["PLAN"], '{"something": 1}', "not a plan"),
    (["PLAN"], '[{"vmid": 951, "ip": "10.0.0.151"}]', "has no prefix length"),
    (["PLAN", "999"], None, "guest 999 is not in"),
    (["PLAN", "95x"], None, "95x: no such plan file; check the path"),
    (["PLAN", "99"], None, "'99' is not a guest ID"),
    (["951"], None, "no plan file given"),
    (["MISSING"], None, "no such plan file; check the path"),
    (["PLAN", "--timeout-ms", "5"], None, "--timeout-ms 5 is out of range"),
])
def test_cli_user_errors_exit_2_one_line(tmp_path, tree, capsys, args, text, needle):
    plan = tmp_path / "plan.json"
    plan.write_text(text if text is not None else FIXTURE.read_text())
    argv = [str(plan) if a == "PLAN" else str(tmp_path / "missing.json") if a == "MISSING" else a for a in args]
    code, _out, err = run_cli(["--config", conf(tmp_path, tree), "preflight", *argv, "--no-probe"], capsys)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err, err


def test_cli_plan_from_stdin(tmp_path, tree, capsys, monkeypatch):
    import io
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(FIXTURE.read_bytes())))
    code, out, _err = run_cli(["--config", conf(tmp_path, tree), "preflight", "-", "951", "--no-probe", "--json"], capsys)
    assert code == 0 and json.loads(out)["plan"][0]["vmid"] == 951


# -- the lab: real kernels, real ARP --------------------------------------------------

def _monitor(lab, vmid):
    """Play a running LXC container for pve.guest_running: its monitor's abstract socket
    @/var/lib/lxc/<vmid>/command, in the lab's PVE namespace (unix sockets are per netns)."""
    code = ("import socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"s.bind('\\0/var/lib/lxc/{vmid}/command'); s.listen(1)\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n")
    return lab.spawn(lab.pve, [sys.executable, "-c", code], ready="ready")


def test_lab_preflight(lab, pve, run_cli, tmp_path):
    plan = tmp_path / "plan.json"
    shutil.copy(FIXTURE, plan)
    pve.settings(probe_timeout_ms=300)
    pve.guest(952)                                         # CT 952 exists, re-applied by the plan...
    lab.add_host("ct952", "10.0.0.152/24", mac="52:54:00:67:89:b2")   # ...and is up with its own MAC
    monitor = _monitor(lab, 952)
    lab.add_host("squat", "10.0.0.151/24", mac=SQUAT_MAC)          # a device outside the plan on 951's IP
    lab.add_host("gw", "10.0.0.1/24")
    code, out, err = run_cli(lab, "preflight", str(plan), "951", "952", "953", "--json")
    assert code == 1, (out, err)
    by = {g["vmid"]: g["nics"][0] for g in json.loads(out)["plan"]}
    [c] = by[951]["conflicts"]
    assert (c["kind"], c["mac"], c["vmids"]) == ("in-use-on-wire", SQUAT_MAC, [951])
    assert by[952]["verdict"] == "clear", by[952]
    assert by[953]["verdict"] == "clear" and "3 probes" in by[953]["note"]
    # CT 952 no longer runs, but its MAC still answers: a copy of it is up.
    monitor.kill()
    monitor.wait()
    code, out, err = run_cli(lab, "preflight", str(plan), "952", "--json")
    assert code == 1, (out, err)
    [c] = json.loads(out)["plan"][0]["nics"][0]["conflicts"]
    assert c["mac"] == "52:54:00:67:89:b2" and "another copy of this guest (same MAC) is up" in c["detail"]


def test_lab_preflight_guest_on_another_node_answering_from_its_own_mac(lab, pve, run_cli, tmp_path):
    """Files source: this node cannot see a guest of pve2 run, so CT 952 configured on pve2
    (nodes/pve2/lxc/952.conf) answering from its planned MAC is CT 952 itself, not
    "another copy of this guest" (the re-check of a deployed cluster)."""
    plan = tmp_path / "plan.json"
    shutil.copy(FIXTURE, plan)
    pve.settings(probe_timeout_ms=300)
    conf = pve.guest(952, node="pve2")
    assert conf == pve.root / "nodes" / "pve2" / "lxc" / "952.conf"
    spec = pve.spec(952)
    lab.add_host("ct952", spec["cidr"], mac=spec["mac"])            # up on pve2, with its own MAC
    lab.add_host("gw", "10.0.0.1/24")
    code, out, err = run_cli(lab, "preflight", str(plan), "952", "--json")
    assert code == 0, (out, err)
    [g] = json.loads(out)["plan"]
    nic = g["nics"][0]
    assert (nic["verdict"], nic["conflicts"]) == ("clear", []), nic
    assert "another copy" not in out
    # the same MAC from a stranger's address is still found: the wire was really probed
    lab.add_host("squat", "10.0.0.153/24", mac=SQUAT_MAC)
    code, out, err = run_cli(lab, "preflight", str(plan), "952", "953", "--json")
    assert code == 1, (out, err)
    by = {g["vmid"]: g["nics"][0] for g in json.loads(out)["plan"]}
    assert by[952]["verdict"] == "clear" and by[953]["conflicts"][0]["mac"] == SQUAT_MAC


def test_lab_preflight_no_probe_sends_nothing(lab, pve, run_cli, responder, tmp_path):
    plan = tmp_path / "plan.json"
    shutil.copy(FIXTURE, plan)
    ear = responder(lab.add_host("ear"), "--iface", "eth0", "--ip", "10.0.0.151", "--ip", "10.0.0.250",
                    "--drop", "100")
    code, out, err = run_cli(lab, "preflight", str(plan), "951", "--no-probe")
    assert code == 0, (out, err)
    _send_probe(lab, "10.0.0.250")
    lines = ear.wait_for(lambda ls: any("seen probe for 10.0.0.250 " in x for x in ls))
    assert not any("for 10.0.0.151 " in x for x in lines), lines


def _send_probe(lab, ip, iface="vmbr0"):
    code = ("from phoenix_hook.net import arp, wire, hostnet\n"
            f"w = wire.Wire([{iface!r}]); w.send({iface!r}, arp.build_probe(hostnet.link({iface!r}).mac, {ip!r}))")
    p = lab.run(lab.pve, [sys.executable, "-c", code], env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr


# -- VMs: the real hookscript for a qemu-server config with ipconfig0 ------------------

VM120 = ("name: web120\nboot: order=scsi0\ncores: 2\nmemory: 2048\n"
         "net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0,firewall=1\n"
         "ipconfig0: ip=10.0.0.120/24,gw=10.0.0.1\n")


def test_lab_hook_refuses_a_vm_whose_ipconfig_address_is_taken(lab, pve, run_hook):
    labmod.write_tree(str(pve.root), pve.node, {120: VM120}, kind="qemu")
    lab.add_host("squat", "10.0.0.120/24", mac=SQUAT_MAC)
    code, out, recs = run_hook(lab, 120)
    assert code == 1, out
    assert f"VM 120 net0 10.0.0.120 is in use by {SQUAT_MAC}" in out, out
    assert "start refused" in out and "Traceback" not in out
    assert len(recs) == 1 and recs[0]["type"] == "qemu" and recs[0]["action"] == "refused"


def test_lab_check_works_for_a_vm(lab, pve, run_cli):
    labmod.write_tree(str(pve.root), pve.node, {120: VM120}, kind="qemu")
    lab.add_host("squat", "10.0.0.120/24", mac=SQUAT_MAC)
    code, out, err = run_cli(lab, "check", "120", "--json", "--timeout-ms", "300")
    assert code == 1, (out, err)
    g = json.loads(out)["guests"][0]
    assert (g["vmid"], g["type"], g["name"], g["verdict"]) == (120, "qemu", "web120", "conflict")
    assert g["nics"][0]["conflicts"][0]["mac"] == SQUAT_MAC
    code, out, err = run_cli(lab, "check", "--all", "--json", "--timeout-ms", "300")
    assert code == 1 and [x["vmid"] for x in json.loads(out)["guests"]] == [120], (out, err)


def test_lab_hook_vm_with_vlan_tag(lab, pve, run_hook, responder):
    labmod.write_tree(str(pve.root), pve.node, {121: (
        "name: web121\nnet0: e1000=A2:C0:43:67:08:A2,bridge=vmbr0,tag=30\n"
        "ipconfig0: ip=10.0.30.5/24,gw=10.0.30.1\n")}, kind="qemu")
    responder(lab.add_host("vlan30"), "--iface", "eth0", "--ip", "10.0.30.5", "--vlan", "30", "--mac", SQUAT_MAC)
    code, out, _recs = run_hook(lab, 121)
    assert code == 1, out
    assert f"VM 121 net0 10.0.30.5 is in use by {SQUAT_MAC}" in out and "VLAN 30" in out, out


def test_lab_hook_vm_arriving_by_live_migration_is_not_probed(lab, pve, run_hook, responder):
    labmod.write_tree(str(pve.root), pve.node, {120: VM120}, kind="qemu")
    # The source node's copy of the VM still holds the address during migration.
    src = responder(lab.add_host("source"), "--iface", "eth0", "--ip", "10.0.0.120", "--ip", "10.0.0.250",
                    "--mac", "a2:c0:43:67:08:a1")
    code, out, recs = run_hook(lab, 120, env_extra={"PVE_MIGRATED_FROM": "pve2"})
    assert code == 0, out
    assert "arrives by migration from pve2: not probed" in out
    assert [(r["vmid"], r["verdict"], r["migrated_from"]) for r in recs] == [(120, "skipped", "pve2")]
    _send_probe(lab, "10.0.0.250")
    lines = src.wait_for(lambda ls: any("seen probe for 10.0.0.250 " in x for x in ls))
    assert not any("for 10.0.0.120 " in x for x in lines), lines

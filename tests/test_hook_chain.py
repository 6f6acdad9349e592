"""install.sh --chain: the hook runs the guest's previous hookscript after its own decision,
only for the guest the record was written for, and only a script root alone can change.

No network: the guests here are either mode = off or on a bridge that does not exist, so
nothing is probed. Records live under pve_root (pmxcfs on a node: every node sees them).
"""
import json
import os
import stat

import pytest

from phoenix_hook import hook
from phoenix_hook.pve import chain

MAC1, MAC2, OTHER = "bc:24:11:00:09:51", "bc:24:11:00:09:52", "bc:24:11:77:77:77"
GENID = "1f3c2a9e-7b4d-4c1e-9a0f-5d6e7f8a9b0c"


class Node:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.etc = tmp_path / "etc"
        self.etc.mkdir()
        self.pve = tmp_path / "pve"
        self.lxc = self.pve / "nodes" / "pve1" / "lxc"
        self.lxc.mkdir(parents=True)
        self.guest(951, MAC1, bridge="vmbr9")
        self.guest(952, MAC2, bridge="vmbr9")
        self.conf = self.etc / "phoenix-hook.conf"
        self.settings()
        self.calls = tmp_path / "calls"
        self.snippets = tmp_path / "snippets"
        self.snippets.mkdir()
        self.prev = self.snippets / "previous.sh"
        self.prev.write_text(f"#!/bin/sh\necho \"$1 $2\" >> {self.calls}\necho previous hook ran\nexit 7\n")
        self.prev.chmod(0o755)
        self.env = {"PHOENIX_HOOK_CONF": str(self.conf)}

    def settings(self, node="pve1"):
        self.conf.write_text(f"[phoenix-hook]\npve_root = {self.pve}\nnode = {node}\n"
                             f"log_file = {self.tmp}/log.jsonl\nrun_dir = {self.tmp}/run\non_error = refuse\n"
                             f"[guest:952]\nmode = off\n")

    def guest(self, vmid, mac, bridge="vmbr9", node="pve1", kind="lxc", extra=""):
        d = self.pve / "nodes" / node / ("lxc" if kind == "lxc" else "qemu-server")
        d.mkdir(parents=True, exist_ok=True)
        if kind == "lxc":
            net = f"net0: name=eth0,bridge={bridge},hwaddr={mac.upper()},ip=10.0.0.{vmid % 256}/24\n"
        else:
            net = f"net0: virtio={mac.upper()},bridge={bridge}\n"
        (d / f"{vmid}.conf").write_text(f"hostname: g{vmid}\n{net}{extra}")

    def record(self, vmid, macs=(), vmgenid=None, path=None, **extra):
        d = self.pve / "phoenix-hook" / "chain"
        d.mkdir(parents=True, exist_ok=True)
        data = {"vmid": vmid, "type": "ct", "volid": "local:snippets/previous.sh",
                "path": str(path or self.prev), "macs": list(macs), "vmgenid": vmgenid}
        data.update(extra)
        f = d / f"{vmid}.json"
        f.write_text(json.dumps(data))
        return f

    def called(self):
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    n.record(951, [MAC1])
    n.record(952, [MAC2])
    return n


def main(node, vmid, phase):
    return hook.main([str(vmid), phase], environ=node.env, watchdog=False)


@pytest.mark.parametrize("phase", ["post-start", "pre-stop", "post-stop"])
def test_other_phases_run_the_previous_hook_and_return_its_code(node, phase):
    assert main(node, 951, phase) == 7
    assert node.called() == [f"951 {phase}"]


def test_pre_start_runs_the_previous_hook_after_ours_and_its_code_counts(node, capfd):
    assert main(node, 952, "pre-start") == 7      # ours: mode = off, allowed
    out = capfd.readouterr().out
    assert out.index("mode = off") < out.index("previous hook ran")
    assert node.called() == ["952 pre-start"]


def test_a_start_we_refuse_does_not_run_the_previous_hook(node, capfd):
    assert main(node, 951, "pre-start") == 1      # vmbr9 missing, on_error = refuse
    assert "bridge vmbr9 does not exist" in capfd.readouterr().out
    assert node.called() == []


def test_a_missing_previous_hook_fails_pre_start_as_pve_would(node, capfd):
    os.unlink(node.prev)
    assert main(node, 952, "pre-start") == 1
    assert "chained hookscript" in capfd.readouterr().out
    assert main(node, 952, "post-stop") == 0


@pytest.mark.parametrize("phase,code", [("pre-start", 0), ("post-stop", 0)])
def test_a_new_guest_with_the_same_vmid_does_not_run_the_old_guests_hook(node, capfd, journal, phase, code):
    """pct destroy 952; pct create 952 (or a clone to 952): new MACs, the old record stays."""
    node.guest(952, OTHER)
    assert main(node, 952, phase) == code
    out = capfd.readouterr().out
    assert node.called() == []
    line = next(x for x in out.splitlines() if "previous.sh" in x)
    assert line.startswith("WARNING: phoenix-hook: guest 952: the chain record ") and "was NOT run" in line
    assert OTHER in line and MAC2 in line and "install.sh --attach 952 --chain" in line
    assert any("952" in j and "NOT run" in j for j in journal)


def test_a_nic_added_later_keeps_the_record(node):
    lines = (node.lxc / "951.conf").read_text() + f"net1: name=eth1,bridge=vmbr9,hwaddr={OTHER},ip=dhcp\n"
    (node.lxc / "951.conf").write_text(lines)
    assert main(node, 951, "post-stop") == 7


def test_a_vm_is_recognised_by_its_vmgenid(node, capfd):
    node.guest(9100, MAC1, kind="qemu", extra=f"vmgenid: {GENID}\n")
    node.record(9100, [MAC1], vmgenid=GENID)
    assert main(node, 9100, "post-stop") == 7
    # qm clone keeps nothing of it: same MAC copied by hand, but a new vmgenid
    node.guest(9100, MAC1, kind="qemu", extra="vmgenid: 00000000-1111-2222-3333-444444444444\n")
    assert main(node, 9100, "post-stop") == 0
    assert "vmgenid" in capfd.readouterr().out
    assert node.called() == ["9100 post-stop"]


def test_after_a_migration_the_other_node_runs_the_same_record(node):
    """The guest now lives on pve2; the record under pve_root is the cluster's, not pve1's."""
    (node.lxc / "951.conf").rename(node.tmp / "gone")
    node.guest(951, MAC1, node="pve2")
    node.settings(node="pve2")
    assert main(node, 951, "post-start") == 7
    assert node.called() == ["951 post-start"]


@pytest.mark.parametrize("what", ["script-mode", "script-owner", "script-dir", "record-owner",
                                  "chain-dir", "record-symlink"])
def test_an_unsafe_script_or_record_is_never_run(node, capfd, journal, what):
    rec = chain.record_path(str(node.pve), 952)
    if what == "script-mode":
        node.prev.chmod(0o775)
    elif what == "script-owner":
        os.chown(node.prev, 65534, 65534)
    elif what == "script-dir":
        node.snippets.chmod(0o777)
    elif what == "record-owner":
        os.chown(rec, 65534, 0)
    elif what == "chain-dir":
        os.chmod(os.path.dirname(rec), 0o757)
    else:
        os.rename(rec, rec + ".real")
        os.symlink(rec + ".real", rec)
    assert main(node, 952, "pre-start") == 1
    out = capfd.readouterr().out
    assert node.called() == []
    assert "not started" in out and "Traceback" not in out, out
    assert journal, "a refused chained hookscript goes to the journal too"
    assert main(node, 952, "post-stop") == 0 and node.called() == []


def test_an_old_node_local_record_is_not_run(node, capfd):
    os.unlink(chain.record_path(str(node.pve), 952))
    (node.etc / "chain").mkdir()
    (node.etc / "chain" / "952").write_text(f"volid=local:snippets/previous.sh\npath={node.prev}\n")
    assert main(node, 952, "post-stop") == 0
    assert node.called() == []
    assert "old chain record" in capfd.readouterr().out


def test_no_record_runs_nothing_and_says_nothing(node, capfd):
    for vmid in (951, 952):
        os.unlink(chain.record_path(str(node.pve), vmid))
    assert main(node, 952, "post-stop") == 0
    assert capfd.readouterr().out == "" and node.called() == []


@pytest.mark.parametrize("body", ["{", "[]", '{"vmid": 952}', '{"vmid": 953, "volid": "a", "path": "/x"}',
                                  '{"vmid": 952, "volid": "a", "path": "relative"}'])
def test_a_record_install_sh_did_not_write_is_refused_with_one_line(node, capfd, body):
    with open(chain.record_path(str(node.pve), 952), "w") as f:
        f.write(body)
    assert main(node, 952, "pre-start") == 1
    out = capfd.readouterr().out
    assert "is not one install.sh wrote" in out and "Traceback" not in out


# -- the rule, pure ----------------------------------------------------------------
def rec(macs=(), vmgenid=None):
    return chain.Record(vmid=1, volid="v", path="/p", macs=frozenset(macs), vmgenid=vmgenid, file="f")


@pytest.mark.parametrize("record,macs,genid,ok", [
    (rec([MAC1]), {MAC1}, None, True),
    (rec([MAC1]), {MAC1, OTHER}, None, True),                  # a NIC added
    (rec([MAC1, MAC2]), {MAC2}, None, True),                   # a NIC removed
    (rec([MAC1]), {OTHER}, None, False),                       # new guest / clone
    (rec([MAC1]), set(), None, False),                         # no NIC left to compare
    (rec(), {MAC1}, None, False),                              # a record naming nothing
    (rec([MAC1], GENID), {MAC1}, GENID, True),
    (rec([MAC1], GENID), {MAC1}, "0000", False),               # vmgenid decides
    (rec([MAC1], GENID), {MAC1}, None, True),                  # vmgenid switched off: MACs
    (rec([], GENID), set(), GENID, True),
])
def test_mismatch_rule(record, macs, genid, ok):
    assert (chain.mismatch(record, frozenset(macs), genid) is None) == ok


def test_identity_reads_the_current_section_only():
    from phoenix_hook.pve.guest import parse_config
    text = (f"net0: virtio={MAC1.upper()},bridge=vmbr0\nvmgenid: {GENID.upper()}\n"
            f"[snap]\nvmgenid: 99999999-0000-0000-0000-000000000000\n")
    g = parse_config(text, 9100, "qemu", "pve1")
    assert chain.identity(text, g) == (frozenset({MAC1}), GENID)
    assert chain.identity("vmgenid: 0\n", parse_config("vmgenid: 0\n", 1, "qemu", "pve1"))[1] is None


def test_script_check_follows_symlinks_to_what_pve_runs(tmp_path):
    real = tmp_path / "real.sh"
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    link = tmp_path / "link.sh"
    link.symlink_to(real)
    assert chain.check_script(str(link)) is None
    real.chmod(0o777)
    assert "writable by group or others" in chain.check_script(str(link))
    assert stat.S_IMODE(real.stat().st_mode) == 0o777

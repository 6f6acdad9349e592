"""install.sh --chain: the hook runs the guest's previous hookscript after its own decision.

No root, no network: the guests here are either mode = off or on a bridge that does not
exist, so nothing is probed.
"""
import os
import stat

import pytest

from phoenix_hook import hook


@pytest.fixture
def node(tmp_path):
    etc = tmp_path / "etc"
    (etc / "chain").mkdir(parents=True)
    lxc = tmp_path / "pve" / "nodes" / "pve1" / "lxc"
    lxc.mkdir(parents=True)
    (lxc / "951.conf").write_text("net0: name=eth0,bridge=vmbr9,ip=10.0.0.151/24\n")
    (lxc / "952.conf").write_text("net0: name=eth0,bridge=vmbr9,ip=10.0.0.152/24\n")
    conf = etc / "phoenix-hook.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {tmp_path}/pve\nnode = pve1\n"
                    f"log_file = {tmp_path}/log.jsonl\nrun_dir = {tmp_path}/run\non_error = refuse\n"
                    f"[guest:952]\nmode = off\n")
    calls = tmp_path / "calls"
    prev = tmp_path / "previous.sh"
    prev.write_text(f"#!/bin/sh\necho \"$1 $2\" >> {calls}\necho previous hook ran\nexit 7\n")
    prev.chmod(prev.stat().st_mode | stat.S_IXUSR)
    for vmid in (951, 952):
        (etc / "chain" / str(vmid)).write_text(f"volid=local:snippets/previous.sh\npath={prev}\n")
    node = type("Node", (), {})()
    node.env, node.calls, node.prev = {"PHOENIX_HOOK_CONF": str(conf)}, calls, prev
    return node


def called(node):
    return node.calls.read_text().splitlines() if node.calls.exists() else []


@pytest.mark.parametrize("phase", ["post-start", "pre-stop", "post-stop"])
def test_other_phases_run_the_previous_hook_and_return_its_code(node, phase):
    assert hook.main(["951", phase], environ=node.env) == 7
    assert called(node) == [f"951 {phase}"]


def test_pre_start_runs_the_previous_hook_after_ours_and_its_code_counts(node, capfd):
    assert hook.main(["952", "pre-start"], environ=node.env) == 7      # ours: mode = off, allowed
    out = capfd.readouterr().out
    assert out.index("mode = off") < out.index("previous hook ran")
    assert called(node) == ["952 pre-start"]


def test_a_start_we_refuse_does_not_run_the_previous_hook(node, capfd):
    assert hook.main(["951", "pre-start"], environ=node.env) == 1      # vmbr9 missing, on_error = refuse
    assert "bridge vmbr9 does not exist" in capfd.readouterr().out
    assert called(node) == []


def test_a_missing_previous_hook_fails_pre_start_as_pve_would(node, capfd):
    os.unlink(node.prev)
    assert hook.main(["952", "pre-start"], environ=node.env) == 1
    assert "chained hookscript" in capfd.readouterr().out
    assert hook.main(["952", "post-stop"], environ=node.env) == 0

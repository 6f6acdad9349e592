"""The admin at the shell: options anywhere, fail fast with the fix, say what really happened.

In-process through cli.main with small config trees written here; nothing is
probed (host-address conflicts need no wire) and nothing is sent.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix_hook.cli import main as cli
from phoenix_hook.net import hostnet, wire

REPO = Path(__file__).resolve().parent.parent
NODE = "pve1"


def net(ip, mac="52:54:00:00:09:51", bridge="vmbr0", extra=""):
    return f"name=eth0,bridge={bridge},hwaddr={mac},ip={ip},type=veth{extra}"


class Tree:
    """A /etc/pve-like tree and a settings file pointing at it."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.root = tmp / "pve"
        (self.root / "nodes" / NODE / "lxc").mkdir(parents=True)
        self.log = tmp / "decisions.jsonl"
        self.conf = tmp / "phoenix-hook.conf"
        self.settings()

    def settings(self, extra: str = "", sections: str = "") -> str:
        self.conf.write_text(f"[phoenix-hook]\npve_root = {self.root}\nnode = {NODE}\nlog_file = {self.log}\n"
                             f"run_dir = {self.tmp / 'run'}\n{extra}{sections}")
        return str(self.conf)

    def ct(self, vmid, *nets, node=NODE, name=None, extra=""):
        d = self.root / "nodes" / node / "lxc"
        d.mkdir(parents=True, exist_ok=True)
        lines = [f"hostname: {name or f'ct{vmid}'}"] + [f"net{i}: {n}" for i, n in enumerate(nets)]
        (d / f"{vmid}.conf").write_text("\n".join(lines) + "\n" + extra)


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path)


@pytest.fixture
def raw_ok(monkeypatch):
    """Probing would be allowed (whoever runs the tests): the commands get past the raw-socket gate."""
    monkeypatch.setattr(wire, "raw_access", lambda: None)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# -- options anywhere ------------------------------------------------------------------------

def test_options_between_and_after_positionals():
    a = cli.parse(["preflight", "plan.json", "--no-probe", "951", "--timeout-ms", "300", "952"])
    assert (a.items, a.no_probe, a.timeout_ms) == (["plan.json", "951", "952"], True, 300)
    a = cli.parse(["check", "--json", "951", "--timeout-ms", "200", "952"])
    assert (a.vmids, a.json, a.timeout_ms) == (["951", "952"], True, 200)
    a = cli.parse(["scan", "--json", "10.0.0.0/24", "--bridge", "vmbr1"])
    assert (a.cidr, a.bridge, a.json) == ("10.0.0.0/24", "vmbr1", True)
    a = cli.parse(["log", "--json", "951", "--since", "2h"])
    assert (a.vmid, a.since, a.json) == ("951", "2h", True)


@pytest.mark.parametrize("argv", [
    ["--config", "{conf}", "settings", "--json"],
    ["settings", "--config", "{conf}", "--json"],
    ["settings", "--json", "--config", "{conf}"],
    ["settings", "--json", "--config={conf}"],
])
def test_config_before_or_after_the_command(tree, capsys, argv):
    code, out, err = run(capsys, *[a.format(conf=tree.conf) for a in argv])
    assert code == 0, err
    assert json.loads(out)["file"] == str(tree.conf)


def test_config_after_the_command_wins_over_one_before(tree, capsys, tmp_path):
    other = tmp_path / "other.conf"
    other.write_text("[phoenix-hook]\nmode = warn\n")
    code, out, _err = run(capsys, "--config", str(tree.conf), "settings", "--json", "--config", str(other))
    assert code == 0 and json.loads(out)["file"] == str(other)


def test_preflight_plan_then_option_then_ctid(tree, capsys, tmp_path):
    """The issue's own example: `phoenix-hook preflight plan.json --no-probe 951`."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"vmid": 951, "ip": "10.0.0.151/24", "bridge": "vmbr0"},
                                {"vmid": 952, "ip": "10.0.0.152/24", "bridge": "vmbr0"}]))
    code, out, err = run(capsys, "--config", str(tree.conf), "preflight", str(plan), "--no-probe", "951")
    assert code == 0, err
    assert "CT 951" in out and "CT 952" not in out


@pytest.mark.parametrize("argv, hint", [
    (["check", "--bogus"], "(see phoenix-hook check --help)"),
    (["preflight", "p.json", "--timeout-ms"], "(see phoenix-hook preflight --help)"),
    (["--bogus", "check"], "(see phoenix-hook --help)"),
    (["bogus"], "(see phoenix-hook --help)"),
])
def test_usage_hint_names_the_command(capsys, argv, hint):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("phoenix-hook: ") and last.endswith(hint), err
    assert "phoenix-hook phoenix-hook" not in err


# -- fail fast, name the fix -----------------------------------------------------------------

def test_check_without_arguments_prints_usage(tree, capsys):
    code, out, err = run(capsys, "--config", str(tree.conf), "check")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: phoenix-hook check")
    assert lines[-1] == ("phoenix-hook: name the guests to check (check 951 952), or --all for every "
                         "guest of this node")


def test_check_both_vmids_and_all(tree, capsys):
    code, _out, err = run(capsys, "--config", str(tree.conf), "check", "951", "--all")
    assert code == 2 and "not both" in err


def test_preflight_without_arguments_says_plan_is_required(tree, capsys):
    code, _out, err = run(capsys, "--config", str(tree.conf), "preflight")
    assert code == 2
    assert err.startswith("usage: phoenix-hook preflight")
    last = err.strip().splitlines()[-1]
    assert "preflight needs PLAN" in last and "guest IDs after it are optional" in last
    assert "required: PLAN, CTID" not in err


def _no_source(monkeypatch):
    from phoenix_hook.pve import sources

    def boom(*a, **kw):
        raise AssertionError("configs were read before the raw-socket check")
    monkeypatch.setattr(sources, "open_source", boom)
    monkeypatch.setattr(sources, "read_guests", boom)


@pytest.mark.parametrize("argv, alternative", [
    (["check", "951"], ""),
    (["check", "--json", "951"], ""),
    (["preflight", "PLAN"], " (or add --no-probe for the config-level checks only)"),
    (["scan", "10.0.0.0/30"], ""),
])
def test_without_raw_sockets_stop_at_once_with_sudo_hint(tree, capsys, monkeypatch, tmp_path, argv, alternative):
    plan = tmp_path / "plan.json"
    plan.write_text('[{"vmid": 951, "ip": "10.0.0.151/24"}]')
    monkeypatch.setattr(wire, "raw_access", lambda: "raw sockets need root (CAP_NET_RAW)")
    _no_source(monkeypatch)
    argv = [str(plan) if a == "PLAN" else a for a in argv] + ["--config", str(tree.conf)]
    code, out, err = run(capsys, *argv)
    assert code == 3 and out == ""
    assert err == (f"phoenix-hook: could not check: {argv[0]} sends probes and raw sockets need root "
                   f"(CAP_NET_RAW); run it as root: sudo phoenix-hook {' '.join(argv)}{alternative}\n")


def test_preflight_no_probe_needs_no_raw_sockets(tree, capsys, monkeypatch, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text('[{"vmid": 951, "ip": "10.0.0.151/24"}]')
    monkeypatch.setattr(wire, "raw_access", lambda: "raw sockets need root (CAP_NET_RAW)")
    code, out, err = run(capsys, "--config", str(tree.conf), "preflight", str(plan), "--no-probe")
    assert code == 0, err
    assert "CT 951" in out


def test_raw_access_asks_the_kernel(monkeypatch):
    """raw_access opens (and closes) a socket; it does not look at the uid."""
    socket = wire.socket                   # the socket module wire uses (the C _socket)

    def denied(*a):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(socket, "socket", denied)
    assert wire.raw_access() == "raw sockets need root (CAP_NET_RAW)"

    def unsupported(*a):
        raise OSError(97, "Address family not supported by protocol")
    monkeypatch.setattr(socket, "socket", unsupported)
    assert "no raw (AF_PACKET) sockets" in wire.raw_access()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and util-linux setpriv to drop CAP_NET_RAW")
def test_root_without_cap_net_raw_is_told_at_once(tree):
    """Root, but CAP_NET_RAW dropped from the bounding set: the uid says yes, the kernel no."""
    tree.ct(951, net("10.0.0.151/24"))
    assert wire.raw_access() is None              # root with the capability: allowed
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run(["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", sys.executable,
                        "-m", "phoenix_hook", "check", "951", "--config", str(tree.conf)],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 3, p.stderr
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"sudo phoenix-hook check 951 --config {tree.conf}" in p.stderr


def test_reservations_source_api_without_api_section_names_it_and_the_file(tree, capsys):
    code, out, err = run(capsys, "reservations", "--format", "csv", "--source", "api", "--config", str(tree.conf))
    assert code == 2 and out == ""
    assert f"--source api: {tree.conf} has no [api] section" in err
    assert "pve_root" not in err


def test_source_api_without_any_settings_file(monkeypatch):
    from phoenix_hook.errors import UsageError
    from phoenix_hook.pve import sources
    from phoenix_hook.settings import Settings
    monkeypatch.delenv("PHOENIX_HOOK_CONF", raising=False)
    with pytest.raises(UsageError, match=r"there is no settings file \(/etc/phoenix-hook/phoenix-hook.conf\), "
                                         r"so no \[api\] section"):
        sources.open_source(Settings(path=None, pve_root="/nonexistent"), "api")


def test_unreadable_plan_names_the_permission(tree, capsys, monkeypatch, tmp_path):
    import builtins
    plan = tmp_path / "plan.json"
    plan.write_text("[]")
    real_open = builtins.open

    def guarded(path, *a, **kw):            # as for a user who may not read the file
        if str(path) == str(plan):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr(builtins, "open", guarded)
    code, _out, err = run(capsys, "--config", str(tree.conf), "preflight", str(plan), "--no-probe")
    assert code == 2
    assert "permission denied" in err and "check the path" not in err, err


# -- say what really happened -----------------------------------------------------------------

def test_check_of_a_warn_mode_guest_says_what_the_hook_would_do(tree, capsys, monkeypatch, raw_ok):
    tree.ct(951, net("10.0.0.151/24", bridge="vmbr9"))
    tree.ct(952, net("10.0.0.152/24", mac="52:54:00:00:09:52", bridge="vmbr9"))
    tree.settings(sections="[guest:951]\nmode = warn\n")
    # Both addresses are this host's own: a conflict found without any probe.
    monkeypatch.setattr(hostnet, "local_ipv4", lambda: frozenset({"10.0.0.151", "10.0.0.152"}))
    code, out, err = run(capsys, "--config", str(tree.conf), "check", "951", "952")
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines == ["phoenix-hook: CT 951 has mode = warn ([guest:951]): at pre-start the hook would start "
                     "it anyway, with WARNING lines; set mode = enforce to refuse the start"]
    tree.settings(extra="mode = off\n")
    code, out, err = run(capsys, "--config", str(tree.conf), "check", "951")
    assert code == 1 and "CT 951 has mode = off (the settings): the hook does not check it" in err


def test_reservations_name_every_guest_left_out(tree, capsys):
    tree.ct(951, net("10.0.0.151/24"))
    tree.ct(952, net("10.0.0.300/24", mac="52:54:00:00:09:52"))            # malformed
    tree.ct(953, net("dhcp", mac="52:54:00:00:09:53"))
    tree.ct(954, net("10.0.0.154/24", mac="52:54:00:00:09:54"), extra="template: 1\n")
    tree.ct(955)                                                           # no NIC
    code, out, err = run(capsys, "--config", str(tree.conf), "reservations", "--format", "dnsmasq")
    assert code == 1                      # 952 could not be reserved
    assert "dhcp-host=52:54:00:00:09:51,10.0.0.151,ct951" in out
    lines = err.strip().splitlines()
    for vmid, words in [(952, "not reserved: CT 952 net0: the network line cannot be read"),
                        (953, "left out: CT 953 net0: ip=dhcp"),
                        (954, "left out: CT 954: a template"),
                        (955, "left out: CT 955: no network interface")]:
        assert sum(f"CT {vmid}" in x for x in lines) == 1, (vmid, err)
        assert any(words in x for x in lines), (words, err)
    assert not any("CT 951" in x for x in lines)
    # only guests that need no reservation left out: exit 0
    (tree.root / "nodes" / NODE / "lxc" / "952.conf").unlink()
    code, _out, err = run(capsys, "--config", str(tree.conf), "reservations", "--format", "csv")
    assert code == 0 and "left out: CT 953" in err


def test_a_malformed_address_is_said_once_by_the_hook(tree, capsys):
    from phoenix_hook import hook
    tree.ct(951, net("10.0.0.300/24"), net("dhcp", mac="52:54:00:00:09:61").replace("eth0", "eth1"))
    code = hook.main(["951", "pre-start"], environ={"PHOENIX_HOOK_CONF": str(tree.conf)}, watchdog=False)
    out = capsys.readouterr().out
    assert code == 0                                   # on_error = allow
    assert out.count("10.0.0.300") == 1, out
    assert "WARNING: phoenix-hook: CT 951 was NOT checked" in out and "pct set 951 --net0" in out
    assert "CT 951 net1: ip=dhcp" in out                # the other NIC's line stays
    rec = json.loads(tree.log.read_text())
    assert "10.0.0.300" in rec["error"]                 # the log keeps the reason in full


def test_a_command_with_its_own_config_or_remainder_still_parses(monkeypatch):
    """Commands other modules add: one that defines --config itself, one with a REMAINDER
    positional (which argparse cannot intermix) both parse."""
    import argparse
    import types

    def add_parser(sub):
        p = sub.add_parser("fakecmd")
        p.add_argument("--config", dest="config")
        p.add_argument("--flag", action="store_true")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        return p
    mod = types.SimpleNamespace(add_parser=add_parser, run=lambda args: 0)
    monkeypatch.setitem(sys.modules, "phoenix_hook.cli.fakecmd", mod)
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + ["fakecmd"])
    a = cli.parse(["--config", "x.conf", "fakecmd", "--flag", "a", "--b"])
    assert (a.config, a.flag, a.rest) == ("x.conf", True, ["a", "--b"])

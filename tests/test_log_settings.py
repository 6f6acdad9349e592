"""`phoenix-hook log` (the decision log read back, rotated copies included, and the
logrotate rule shipped for it) and `phoenix-hook settings [--check]`."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from phoenix_hook import hook
from phoenix_hook.checks import decisions
from phoenix_hook.cli import main as cli
from phoenix_hook.net import hostnet

REPO = Path(__file__).resolve().parent.parent
RULE = REPO / "contrib" / "logrotate" / "phoenix-hook"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A node with CT 951 (its address held by this host: a conflict without probing) and CT 952."""
    d = tmp_path / "pve" / "nodes" / "pve1" / "lxc"
    d.mkdir(parents=True)
    (d / "951.conf").write_text("hostname: a\nnet0: name=eth0,bridge=vmbr9,hwaddr=52:54:00:00:09:51,"
                                "ip=10.0.0.151/24,type=veth\n")
    (d / "952.conf").write_text("hostname: b\nnet0: name=eth0,bridge=vmbr9,hwaddr=52:54:00:00:09:52,"
                                "ip=10.0.0.300/24,type=veth\n")
    log = tmp_path / "log" / "decisions.jsonl"
    conf = tmp_path / "c.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {tmp_path / 'pve'}\nnode = pve1\nlog_file = {log}\n"
                    f"run_dir = {tmp_path / 'run'}\n")
    monkeypatch.setattr(hostnet, "local_ipv4", lambda: frozenset({"10.0.0.151"}))
    env = {"PHOENIX_HOOK_CONF": str(conf)}

    def start(vmid, **extra):
        return hook.main([str(vmid), "pre-start"], environ=dict(env, **extra), watchdog=False)
    return conf, log, start


def test_log_reads_back_what_the_hook_decided(node, capsys):
    conf, log, start = node
    assert start(951) == 1                              # refused: the host holds 10.0.0.151
    assert start(952) == 0                              # malformed: started unchecked (on_error = allow)
    assert start(951, PVE_MIGRATED_FROM="pve2") == 0
    capsys.readouterr()
    code, out, err = run(capsys, "log", "--config", str(conf))
    assert code == 0 and err == ""
    rows = out.splitlines()
    assert rows[0].split() == ["TIME", "GUEST", "VERDICT", "ACTION", "DETAIL"]
    assert len(rows) == 4                               # newest last, one row each when piped
    assert "CT 951" in rows[1] and "conflict" in rows[1] and "refused" in rows[1]
    assert "is configured on this host itself" in rows[1]
    assert "CT 952" in rows[2] and "allowed" in rows[2] and "10.0.0.300" in rows[2]
    assert "arrived by live migration from pve2" in rows[3]
    code, out, _err = run(capsys, "log", "952", "--json", "--config", str(conf))
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["vmid"] for r in recs] == [952] and recs[0] == json.loads(log.read_text().splitlines()[1])
    code, out, _err = run(capsys, "log", "--last", "1", "--json", "--config", str(conf))
    assert [json.loads(x).get("migrated_from") for x in out.splitlines()] == ["pve2"]


def test_log_since(node, capsys):
    conf, log, _start = node
    now = datetime.now().astimezone()
    old = {"vmid": 951, "verdict": "clear", "action": "allowed",
           "time": (now - timedelta(days=3)).strftime(decisions.TIME_FORMAT)}
    new = dict(old, vmid=952, time=(now - timedelta(minutes=5)).strftime(decisions.TIME_FORMAT))
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    for since, want in [("1h", [952]), ("2d", [952]), ("7d", [951, 952]), ("1w", [951, 952]),
                        ((now - timedelta(days=1)).strftime("%Y-%m-%d"), [952]),
                        ((now - timedelta(days=4)).strftime("%Y-%m-%d %H:%M"), [951, 952])]:
        code, out, _err = run(capsys, "log", "--json", "--since", since, "--config", str(conf))
        assert code == 0 and [json.loads(x)["vmid"] for x in out.splitlines()] == want, since
    code, out, err = run(capsys, "log", "--since", "last tuesday", "--config", str(conf))
    assert code == 2 and "--since 'last tuesday' is not a time" in err and out == ""


@pytest.mark.parametrize("argv, words", [
    (["log", "95"], "'95' is not a VMID"),
    (["log", "--last", "0"], "--last 0"),
])
def test_log_usage_errors(node, capsys, argv, words):
    conf, _log, _start = node
    code, out, err = run(capsys, *argv, "--config", str(conf))
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_log_not_written_yet_and_unreadable(node, capsys, monkeypatch):
    conf, log, _start = node
    code, out, err = run(capsys, "log", "--config", str(conf))
    assert code == 0 and out == ""
    assert f"no decisions logged yet: {log} does not exist" in err
    log.parent.mkdir(parents=True)
    log.write_text("")
    from phoenix_hook.cli import log as cmd

    def denied(path):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(cmd, "open_log", denied)
    code, out, err = run(capsys, "log", "--config", str(conf))
    assert code == 3 and "permission denied; run it as root: sudo phoenix-hook log" in err


def test_log_skips_damaged_lines_and_reads_rotated_copies(node, capsys):
    conf, log, _start = node
    log.parent.mkdir(parents=True)

    def rec(vmid):
        return json.dumps({"vmid": vmid, "verdict": "clear", "action": "allowed",
                           "time": "2026-11-2%dT10:00:00+0000" % (vmid - 950)}) + "\n"
    with gzip.open(f"{log}.2.gz", "wt") as f:
        f.write(rec(951))
    Path(f"{log}.1").write_text(rec(952) + '{"vmid": 953, "verd')      # a line cut by a crash
    log.write_text(rec(954) + "[1, 2]\n\n")
    code, out, err = run(capsys, "log", "--json", "--config", str(conf))
    assert [json.loads(x)["vmid"] for x in out.splitlines()] == [951, 952, 954]    # oldest first
    assert f"1 line of {log}.1 is not a decision record (line 2)" in err
    assert f"1 line of {log} is not a decision record (line 2)" in err


@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                          st.just('{"vmid": "x", "report": [1], "time": 5}'),
                          st.just('{"report": {"nics": [1, {"conflicts": [null, {}]}]}}'))))
def test_any_log_content_is_read_without_a_crash(lines):
    records, _bad = decisions.parse_records(lines)
    for r in decisions.rows(decisions.select(records, since=datetime.now(timezone.utc))):
        assert isinstance(r[4], list)
    assert all(isinstance(r[4], list) for r in decisions.rows(records))


# -- the logrotate rule ----------------------------------------------------------------------

def test_logrotate_rule_names_the_default_log_file():
    from phoenix_hook.settings import Settings
    text = RULE.read_text()
    assert f"{Settings().log_file} {{" in text
    directives = [x.split()[0] for x in text.splitlines() if x.startswith("\t")]
    assert "copytruncate" not in directives    # the hook appends with one write(); a rename is safe
    assert "nocreate" in directives and "missingok" in directives


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs logrotate (dev.sh installs it)")
def test_logrotate_rotates_and_log_still_reads_everything(node, capsys, tmp_path):
    conf, log, start = node
    rule = tmp_path / "rule"
    rule.write_text(RULE.read_text().replace("/var/log/phoenix-hook/decisions.jsonl", str(log)))
    state = tmp_path / "state"
    check = subprocess.run(["logrotate", "--debug", "--state", str(state), str(rule)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    for vmid in (951, 952, 951):
        start(vmid)
        p = subprocess.run(["logrotate", "--force", "--state", str(state), str(rule)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    start(952)                                  # the hook makes a new file after a rotation
    assert sorted(x.name for x in log.parent.iterdir()) == [
        "decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2.gz", "decisions.jsonl.3.gz"]
    capsys.readouterr()
    code, out, _err = run(capsys, "log", "--json", "--config", str(conf))
    assert [json.loads(x)["vmid"] for x in out.splitlines()] == [951, 952, 951, 952]


# -- settings ----------------------------------------------------------------------------------

def test_settings_shows_each_key_value_and_whether_it_is_the_default(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    token = tmp_path / "token"
    token.write_text("0b2a8f4e-1111-2222-3333-444455556666\n")
    token.chmod(0o600)
    conf.write_text("[phoenix-hook]\nmode = warn\nnode =\ndhcp_ranges = 10.0.0.100-10.0.0.199\n"
                    "[guest:951]\nprobe_timeout_ms = 300\n[api]\nhost = pve1\nuser = audit@pve\n"
                    f"token_name = audit\ntoken_file = {token}\n")
    code, out, err = run(capsys, "settings", "--json", "--config", str(conf))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["file"] == str(conf) and doc["exists"] is True
    by = {(r["section"], r["key"]): r for r in doc["settings"]}
    assert by[("phoenix-hook", "mode")] == {"section": "phoenix-hook", "key": "mode", "value": "warn",
                                            "default": False}
    assert by[("phoenix-hook", "deadline_s")]["value"] == "10" and by[("phoenix-hook", "deadline_s")]["default"]
    assert by[("phoenix-hook", "node")]["default"] is True                  # "node =" is the default
    assert by[("phoenix-hook", "dhcp_ranges")]["value"] == "10.0.0.100-10.0.0.199"
    assert by[("guest:951", "probe_timeout_ms")]["value"] == "300"
    assert by[("api", "host")]["value"] == "pve1"
    from phoenix_hook.settings import KNOWN_KEYS
    assert {k for s, k in by if s == "phoenix-hook"} == KNOWN_KEYS
    code, out, _err = run(capsys, "settings", "--config", str(conf))
    assert out.startswith(f"settings file: {conf} (--config)\n")
    assert any(x.split()[:2] == ["mode", "warn"] and x.endswith("set in the file") for x in out.splitlines())
    assert any(x.split()[:2] == ["deadline_s", "10"] and x.endswith("default") for x in out.splitlines())
    # an incomplete [api] does not stop the hook: shown, and named as a mistake (exit 2)
    conf.write_text("[phoenix-hook]\nmode = warn\n[api]\nhost = pve1\n")
    code, out, err = run(capsys, "settings", "--config", str(conf))
    assert code == 2 and "mode" in out and "lacks user, token_name, token_file" in err
    # a bad value: the hook uses the default, and the table says so
    conf.write_text("[phoenix-hook]\nmode = loud\ndeadline_s = 20\n")
    code, out, err = run(capsys, "settings", "--config", str(conf))
    assert code == 2 and "mode = 'loud' is not valid" in err
    rows = {x.split()[0]: x for x in out.splitlines()[2:]}
    assert rows["mode"].split()[1] == "enforce" and rows["mode"].endswith("default, the file's value is a mistake")
    assert rows["deadline_s"].split()[1] == "20" and rows["deadline_s"].endswith("set in the file")
    code, out, _err = run(capsys, "settings", "--json", "--config", str(conf))
    by = {r["key"]: r for r in json.loads(out)["settings"]}
    assert by["mode"] == {"section": "phoenix-hook", "key": "mode", "value": "enforce", "default": True,
                          "mistake": True}


def test_settings_check_names_every_mistake(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("[phoenix-hook]\nmode = enfroce\nprobe_timeout_ms = 9000\ndeadline_s = 5\nlog_fiel = /x\n"
                    "[guest:951]\nmode = loud\n[guest:abc]\nmode = warn\n[api]\nport = 99999\n")
    code, out, err = run(capsys, "settings", "--check", "--config", str(conf))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    for words in ["[phoenix-hook] mode = 'enfroce' is not valid",
                  "unknown key 'log_fiel' in [phoenix-hook]",
                  "[guest:951] mode = 'loud' is not valid",
                  "section [guest:abc] must be [guest:VMID]",
                  "probe_timeout_ms = 9000 can take 9 s, not less than deadline_s = 5",
                  "[api] port = '99999' is not valid"]:
        assert sum(words in x for x in lines) == 1, (words, err)
    assert lines[-1] == (f"phoenix-hook: 6 mistakes in {conf}; fix them before the next guest start "
                         f"(README 'Settings mistakes')")
    # the first is the one a command stops on; each says what the hook uses instead
    from phoenix_hook.settings import SettingsError, parse
    with pytest.raises(SettingsError) as first:
        parse(conf.read_text(), str(conf))
    assert lines[0].startswith(f"phoenix-hook: {first.value}; ")
    assert any("mode = 'enfroce' is not valid" in x and x.endswith("using the default (enforce)") for x in lines)


def test_settings_check_valid_missing_and_unreadable(tmp_path, capsys, monkeypatch):
    conf = tmp_path / "c.conf"
    conf.write_text("[phoenix-hook]\nmode = warn  # for now\n")
    code, out, _err = run(capsys, "settings", "--check", "--config", str(conf))
    assert code == 0 and out == f"{conf}: valid\n"
    code, _out, err = run(capsys, "settings", "--check", "--config", str(tmp_path / "nope.conf"))
    assert code == 2 and "no such file (--config names it)" in err
    conf.write_text("[phoenix-hook\nmode = warn\n")
    code, _out, err = run(capsys, "settings", "--check", "--config", str(conf))
    assert code == 2 and "not a valid INI file" in err
    monkeypatch.setenv("PHOENIX_HOOK_CONF", str(tmp_path / "missing.conf"))
    code, _out, err = run(capsys, "settings", "--check")
    assert code == 2 and "PHOENIX_HOOK_CONF" in err


def test_settings_check_api_needs_a_complete_set(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text("[api]\nhost = pve1\nuser = audit@pve\n")
    code, _out, err = run(capsys, "settings", "--check", "--config", str(conf))
    assert code == 2 and "lacks token_name, token_file" in err


def test_the_quick_line_filter_never_drops_a_record_of_the_guest():
    m = decisions.mentions(951)
    assert m('{"vmid": 951}') and m('{"action":"refused","vmid":951}') and m('{"vmid" :\t951, "x": 1}')
    assert not m('{"vmid": 9510}') and not m('{"vmid": 95}') and not m('{"node": "951"}')


@given(st.integers(min_value=100, max_value=999999999), st.integers(min_value=100, max_value=999999999),
       st.sampled_from([(", ", ": "), (",", ":")]))
def test_quick_filter_agrees_with_the_record(vmid, other, seps):
    line = json.dumps({"action": "allowed", "vmid": other, "verdict": "clear"}, separators=seps)
    assert decisions.mentions(vmid)(line) == (vmid == other)

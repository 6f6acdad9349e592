"""The hook's own failures never decide a start by themselves: on_error does. No root, no network."""
import errno
import json
import socket

import pytest

from phoenix_hook.checks import check
from phoenix_hook import hook
from phoenix_hook.net import wire
from phoenix_hook.settings import SettingsError, parse


@pytest.fixture
def tree(tmp_path):
    d = tmp_path / "pve" / "nodes" / "pve1" / "lxc"
    d.mkdir(parents=True)
    (d / "951.conf").write_text("hostname: a\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,"
                                "ip=10.0.0.151/24,type=veth\n")

    def settings(**kw):
        values = {"pve_root": tmp_path / "pve", "node": "pve1", "log_file": tmp_path / "log.jsonl",
                  "run_dir": tmp_path / "run", **kw}
        conf = tmp_path / "c.conf"
        conf.write_text("[phoenix-hook]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
        return {"PHOENIX_HOOK_CONF": str(conf)}
    settings.log = tmp_path / "log.jsonl"
    return settings


@pytest.mark.parametrize("on_error,code,action", [("allow", 0, "allowed"), ("refuse", 1, "refused")])
def test_an_internal_error_applies_on_error_with_one_line(tree, monkeypatch, capsys, on_error, code, action):
    def boom(*a, **kw):
        raise KeyError("nic")
    monkeypatch.setattr(check, "run_check", boom)
    assert hook.main(["951", "pre-start"], environ=tree(on_error=on_error), watchdog=False) == code
    out = capsys.readouterr().out
    assert "internal error KeyError: 'nic' (a phoenix-hook bug" in out
    assert "Traceback" not in out
    rec = json.loads(tree.log.read_text())
    assert (rec["verdict"], rec["action"], rec["exit"]) == ("error", action, code)


class _DownSocket:
    """A socket whose receive fails the way a bridge going down does."""
    def __init__(self):
        self.a, self.b = socket.socketpair()
        self.b.send(b"x")                    # readable, so select() returns it

    def fileno(self):
        return self.a.fileno()

    def recvmsg(self, *a):
        raise OSError(errno.ENETDOWN, "Network is down")

    def close(self):
        self.a.close()
        self.b.close()


def test_a_receive_failure_is_a_wire_error_not_a_crash():
    w = wire.Wire([])
    s = _DownSocket()
    w._socks["vmbr0"], w._by_fd[s.fileno()] = s, "vmbr0"
    with pytest.raises(wire.WireError) as e:
        w.receive(1.0)
    assert e.value.errno == errno.ENETDOWN and "receiving on vmbr0 failed" in str(e.value)
    w.close()


@pytest.mark.parametrize("text,words", [
    ("[DEFAULT]\ndeadline_s = 3\n[guest:5]\nmode = warn\n", "unknown section [DEFAULT]"),
    ("[phoenix_hook]\nmode = warn\n", "unknown section [phoenix_hook]"),
])
def test_unknown_sections_are_named(text, words):
    with pytest.raises(SettingsError) as e:
        parse(text, "/etc/phoenix-hook/phoenix-hook.conf")
    assert words in str(e.value) and "/etc/phoenix-hook/phoenix-hook.conf" in str(e.value)


def _conflict_report(guests, settings, opts, **kw):
    from phoenix_hook.checks.report import Finding, GuestResult, NicResult, Report
    g = guests[0]
    nic = NicResult(nic="net0", ip="10.0.0.151", bridge="vmbr0", vlan=None, verdict="conflict",
                    conflicts=[Finding(source="arp", detail="answered our probe", mac="16:0d:a0:c0:b9:1b",
                                       line="10.0.0.151 is in use by 16:0d:a0:c0:b9:1b")])
    return Report(guests=[GuestResult(vmid=g.vmid, type=g.type, name=g.name, nics=[nic])])


@pytest.mark.parametrize("mode,code,action", [("warn", 0, "warned"), ("enforce", 1, "refused")])
def test_a_conflict_refuses_only_in_enforce_mode(tree, monkeypatch, capsys, mode, code, action):
    """warn mode starts the guest (exit 0) with a WARNING: line; enforce refuses (exit 1).
    The root-only lab tests show it on the wire; this shows the policy itself, anywhere."""
    monkeypatch.setattr(check, "run_check", _conflict_report)
    assert hook.main(["951", "pre-start"], environ=tree(mode=mode), watchdog=False) == code
    out = capsys.readouterr().out
    assert ("WARNING:" in out) == (mode == "warn"), out
    assert "16:0d:a0:c0:b9:1b" in out
    rec = json.loads(tree.log.read_text())
    assert (rec["verdict"], rec["action"], rec["exit"]) == ("conflict", action, code)


@pytest.mark.parametrize("change", ["chmod", "chown"])
def test_a_settings_file_others_can_write_is_not_obeyed(tree, monkeypatch, capsys, journal, change):
    """Whoever can write the settings could switch checking off: a file writable by group
    or others, or not root's, is not read at all; the guest is checked on the defaults
    (mode = enforce), and the task log and the journal say why."""
    import os
    env = tree(mode="off")
    conf = env["PHOENIX_HOOK_CONF"]
    if change == "chmod":
        os.chmod(conf, 0o664)
    else:
        os.chown(conf, 65534, 65534)
    logged = []
    monkeypatch.setattr(hook, "_log", lambda settings, record, *a: logged.append((settings, record)))
    hook.main(["951", "pre-start"], environ=env, watchdog=False)
    out = capsys.readouterr().out
    assert "mode = off" not in out
    assert out.startswith(f"WARNING: phoenix-hook: settings: {conf}: not used: it is writable by group or "
                          f"others, or not owned by root"), out
    assert "using the defaults for every setting" in out.splitlines()[0]
    settings, record = logged[-1]
    assert record["mode"] == "enforce" and record["settings_errors"]
    assert journal and "not used" in journal[0]


def test_a_bad_log_file_setting_logs_the_decision_to_the_default_log(tree, monkeypatch, capsys):
    from phoenix_hook.settings import Settings
    logged = []
    monkeypatch.setattr(hook, "_log", lambda settings, record, *a: logged.append((settings.log_file, record)))
    hook.main(["951", "pre-start"], environ=tree(log_file="decisions.jsonl", mode="off"), watchdog=False)
    path, record = logged[-1]
    assert path == Settings().log_file
    assert "log_file = 'decisions.jsonl' is not valid" in record["settings_errors"][0]
    assert "using the default (/var/log/phoenix-hook/decisions.jsonl)" in capsys.readouterr().out


def test_without_a_process_to_spare_the_check_runs_in_place(tree, monkeypatch, capsys):
    """fork() failing (EAGAIN: the node is out of processes) is no reason to skip the check."""
    def no_fork():
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
    monkeypatch.setattr(hook.os, "fork", no_fork)
    assert hook.main(["951", "pre-start"], environ=tree(on_error="refuse", mode="enforce",
                                                         pve_root="/nonexistent")) == 1
    out = capsys.readouterr().out
    assert "cannot start the check's watchdog (Resource temporarily unavailable); checking without it" in out
    assert "could not check" in out and "Traceback" not in out

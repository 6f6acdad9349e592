"""Tables fit the terminal: wrapped to its width on a TTY, one row per line when piped,
colour only on a TTY and never with NO_COLOR. The commands run under a real
pseudo-terminal (pty) of 80 columns."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from hypothesis import given, settings, strategies as st

from phoenix_hook.checks.grid import grid, wrap_lines
from phoenix_hook.checks.report import Finding, GuestResult, NicResult, Report, table
from phoenix_hook.cli.tables import terminal

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LONG = ("CT 910 (Portainer) on node pve2 is also configured with 10.0.0.151 (net0); change one of "
        "them before both run")


def visible(line: str) -> str:
    return ANSI.sub("", line)


def report() -> Report:
    conflict = Finding(source="arp", detail="x", mac="16:0d:a0:c0:b9:1b",
                       line="is in use by 16:0d:a0:c0:b9:1b (vendor unknown, locally administered)")
    warn = Finding(source="config", detail=LONG, vmid=910, node="pve2")
    nic = NicResult(nic="net0", ip="10.0.0.151", bridge="vmbr0", vlan=None, verdict="conflict",
                    conflicts=[conflict], warnings=[warn])
    free = NicResult(nic="net1", ip="10.0.1.151", bridge="vmbr1", vlan=20, verdict="clear",
                     note="no answer in 1000 ms, 3 probes")
    return Report(guests=[GuestResult(vmid=951, type="lxc", name="vllm-granite-embed-r2", nics=[nic, free])])


def test_piped_table_is_one_row_per_line():
    lines = table(report()).splitlines()
    assert lines[0].split() == ["GUEST", "NIC", "IP", "BRIDGE", "VERDICT", "DETAIL"]
    row = [x for x in lines if " net0 " in x]
    assert len(row) == 1 and "locally administered); warning: CT 910" in row[0]
    assert len(row[0]) > 80                       # nothing wrapped when piped
    assert not any(ANSI.search(x) for x in lines)


def test_tty_table_fits_80_columns_one_finding_per_line():
    lines = table(report(), color=True, width=80).splitlines()
    assert all(len(visible(x)) <= 80 for x in lines), lines
    text = "\n".join(visible(x) for x in lines)
    # each finding starts on a line of its own
    assert any(visible(x).strip().startswith("is in use by 16:0d:a0:c0:b9:1b") for x in lines), text
    assert any(visible(x).strip().startswith("warning: CT 910 (Portainer)") for x in lines), text
    # no word is lost in the wrapping
    words = " ".join(visible(x).strip() for x in lines).split()
    for w in LONG.split():
        assert w in words
    assert any("\x1b[31;1m" in x for x in lines)          # the conflict painted on a TTY


def test_narrow_terminal_moves_columns_under_the_row():
    lines = table(report(), width=50).splitlines()
    assert all(len(x) <= 50 for x in lines), lines
    assert any(x.startswith("    ") and "VERDICT conflict" in x for x in lines), lines


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.text("abcdef0123", min_size=1, max_size=12),
                               st.text("xyz .:-", max_size=20),
                               st.lists(st.text("pqrs tuvw", max_size=120), max_size=4)),
                     max_size=6),
       width=st.integers(min_value=40, max_value=200))
def test_grid_fits_any_width_and_keeps_every_word(rows, width):
    lines = grid(("A", "B", "DETAIL"), rows, width)
    assert all(len(x) <= width for x in lines), (width, lines)
    got = " ".join(lines).split()
    for r in rows:
        for text in [r[0], r[1]] + list(r[2]):
            for w in text.split():
                assert w in got or any(w in g for g in got), (w, lines)
    piped = grid(("A", "B", "DETAIL"), rows, None)
    assert len(piped) == len(rows) + 1


def test_wrap_lines_only_on_a_terminal():
    text = ["x" * 30 + " " + "y" * 30]
    assert wrap_lines(text, None) == text
    assert wrap_lines(text, 40) == ["x" * 30, "  " + "y" * 30]


class FakeTTY:
    def __init__(self, tty, cols=80):
        self.tty, self.cols = tty, cols

    def isatty(self):
        return self.tty

    def fileno(self):
        raise OSError("no fd")


def test_terminal_colour_and_width_rules():
    t = terminal(FakeTTY(False), {"COLUMNS": "80"})
    assert (t.color, t.width) == (False, None)               # piped: never painted, never wrapped
    t = terminal(FakeTTY(True), {"COLUMNS": "100"})
    assert (t.color, t.width) == (True, 100)
    assert terminal(FakeTTY(True), {"COLUMNS": "100", "NO_COLOR": "1"}).color is False
    assert terminal(FakeTTY(True), {"COLUMNS": "100", "NO_COLOR": ""}).color is True   # no-color.org: non-empty


# -- the commands under a real pseudo-terminal ---------------------------------------------

def _records(tmp: Path) -> Path:
    log = tmp / "decisions.jsonl"
    rec = {"vmid": 951, "type": "lxc", "phase": "pre-start", "node": "pve1", "mode": "enforce",
           "verdict": "conflict", "action": "refused", "exit": 1, "elapsed_ms": 132.0,
           "time": "2026-11-25T14:03:12+0000",
           "report": {"vmid": 951, "type": "lxc", "name": "a", "verdict": "conflict", "error": None, "notes": [],
                      "nics": [{"nic": "net0", "family": 4, "ip": "10.0.0.151", "bridge": "vmbr0", "vlan": None,
                                "verdict": "conflict", "note": "",
                                "conflicts": [{"source": "arp", "mac": "16:0d:a0:c0:b9:1b",
                                               "vendor": "Some Very Long Vendor Name Incorporated Worldwide",
                                               "detail": "x"}],
                                "warnings": []}]}}
    err = dict(rec, verdict="error", action="allowed", exit=0, report=None,
               error="net0: ip='10.0.0.300/24' is not dhcp, manual or an IPv4 address with /prefix; fix it "
                     "with pct set 952 --net0 ...", vmid=952, time="2026-11-25T14:05:00+0000")
    log.write_text(json.dumps(rec) + "\n" + json.dumps(err) + "\n")
    conf = tmp / "c.conf"
    conf.write_text(f"[phoenix-hook]\nlog_file = {log}\npve_root = {tmp}\nnode = pve1\n")
    return conf


def run_in_pty(argv, cols=80, env_extra=None) -> tuple[int, list[str]]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(PYTHONPATH=str(REPO), **(env_extra or {}))
    p = subprocess.Popen([sys.executable, "-m", "phoenix_hook", *argv], stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:                  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = p.wait(timeout=60)
    return code, b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


def test_log_under_a_pty_fits_80_columns_and_paints(tmp_path):
    conf = _records(tmp_path)
    code, lines = run_in_pty(["log", "--config", str(conf)])
    assert code == 0, lines
    assert all(len(visible(x)) <= 80 for x in lines), lines
    assert any("\x1b[" in x for x in lines)                            # painted on a TTY
    flat = " ".join(" ".join(visible(x) for x in lines).split())
    assert "answered by 16:0d:a0:c0:b9:1b" in flat and "pct set 952" in flat


def test_log_under_a_pty_with_no_color_is_not_painted(tmp_path):
    conf = _records(tmp_path)
    code, lines = run_in_pty(["log", "--config", str(conf)], env_extra={"NO_COLOR": "1"})
    assert code == 0 and lines
    assert not any("\x1b" in x for x in lines), lines
    assert all(len(x) <= 80 for x in lines)


def test_log_piped_is_one_row_per_line(tmp_path):
    conf = _records(tmp_path)
    p = subprocess.run([sys.executable, "-m", "phoenix_hook", "log", "--config", str(conf)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="80"))
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and len(lines) == 3, lines                  # header and two decisions
    assert "\x1b" not in p.stdout
    assert any(len(x) > 80 for x in lines)


def test_audit_under_a_pty_fits_80_columns(tmp_path):
    d = tmp_path / "pve" / "nodes" / "pve1" / "lxc"
    d.mkdir(parents=True)
    for vmid in (951, 952):
        (d / f"{vmid}.conf").write_text(f"hostname: a-rather-long-container-name-{vmid}\nnet0: name=eth0,"
                                        f"bridge=vmbr0,hwaddr=52:54:00:00:09:{vmid - 900},ip=10.0.0.151/24,"
                                        f"type=veth\n")
    conf = tmp_path / "c.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {tmp_path / 'pve'}\nnode = pve1\n")
    code, lines = run_in_pty(["audit", "--config", str(conf)])
    assert code == 1, lines
    assert all(len(visible(x)) <= 80 for x in lines), lines
    assert any("duplicate-ip" in visible(x) for x in lines)

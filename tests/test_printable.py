"""Everything printed for a person shows non-printable characters escaped (task log, tables,
error lines); JSON stays JSON, with the values as they are."""
from __future__ import annotations

import json

from phoenix_hook.checks.report import (Finding, GuestResult, NicResult, Report, printable, table,
                                        task_log_lines)
from phoenix_hook.cli.tables import columns
from phoenix_hook.pve.guest import parse_config

EVIL = "a\x1b[31mb\nc\x1ed\u2028e\x00"


def test_printable_escapes_each_non_printable_character_and_nothing_else():
    assert printable(EVIL) == "a\\x1b[31mb\\nc\\x1ed\\u2028e\\x00"
    assert printable("vmbr0 10.0.0.5/24 é ü 名") == "vmbr0 10.0.0.5/24 é ü 名"
    assert printable(EVIL).isprintable()


def _report():
    n = NicResult(nic="net0", ip="10.0.0.5", bridge="vmbr0", vlan=None, verdict="error",
                  note=f"bridge={EVIL!r} and raw {EVIL}",
                  conflicts=[], warnings=[Finding(source="config", detail=f"other {EVIL}", vmid=7)])
    c = NicResult(nic="net1", ip="10.0.0.6", bridge="vmbr0", vlan=None, verdict="conflict",
                  conflicts=[Finding(source="arp", detail=EVIL, line=f"is in use by {EVIL}")])
    return Report(guests=[GuestResult(vmid=5, type="lxc", name=EVIL, nics=[n, c], notes=[EVIL], error=EVIL)])


def test_task_log_lines_are_one_printable_line_each():
    lines = task_log_lines(_report().guests[0], action="start refused")
    assert lines and all(line.isprintable() for line in lines)
    assert any("\\x1b[31m" in line for line in lines)


def test_table_cells_and_notes_are_printable():
    out = table(_report(), color=False)
    assert all(line.isprintable() for line in out.split("\n"))
    assert "\\u2028" in out


def test_colour_codes_survive_only_where_we_paint():
    out = table(_report(), color=True)
    assert "\x1b[31;1m" in out            # our own paint on the verdict
    assert "\x1b[31mb" not in out          # the config's escape sequence is shown, not sent


def test_json_keeps_the_value_as_json():
    doc = json.loads(_report().json())
    assert doc["guests"][0]["name"] == EVIL and doc["guests"][0]["notes"] == [EVIL]


def test_columns_escape_cells():
    lines = columns([("IP", "OWNER"), ("10.0.0.5", EVIL)])
    assert all(line.isprintable() for line in lines)


def test_audit_table_escapes(tmp_path):
    from phoenix_hook.checks import audit
    g1 = parse_config("hostname: a\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,hwaddr=02:00:00:00:00:01\n", 101)
    g2 = parse_config("hostname: b\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,hwaddr=02:00:00:00:00:02\n",
                      102, node=EVIL)                      # a node name from a tree or the API
    out = audit.table(audit.audit([g1, g2]), [g1, g2])
    assert "duplicate" in out or "10.0.0.5" in out
    assert all(line.isprintable() for line in out.split("\n")) and "\\x1b" in out


def test_cli_error_line_is_printable(tmp_path, capsys):
    from phoenix_hook.cli import main as cli
    plan = tmp_path / f"plan{EVIL.replace(chr(0), '').replace('/', '')}.json"
    conf = tmp_path / "s.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {tmp_path}\nnode = pve1\n")
    (tmp_path / "nodes" / "pve1" / "lxc").mkdir(parents=True)
    rc = cli.main(["--config", str(conf), "preflight", str(plan), "--no-probe"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.rstrip("\n").isprintable()

"""The README in step with the code: every README section a message cites exists, every
JSON key of the README's examples is one the code produces (each example is compared with
the real output of its command, run here on a small tree), and the lists of kinds and
exit codes match what the code does. No probing: host-address conflicts need no wire."""
from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest

from phoenix_hook import hook
from phoenix_hook.cli import main as cli
from phoenix_hook.net import hostnet, wire

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
SQUAT = "16:0d:a0:c0:b9:1b"


def headings() -> set[str]:
    # Backticks and quotes dropped: a heading like Never a false "free", ... is cited without them.
    return {line.lstrip("#").strip().replace("`", "").replace('"', "") for line in README.splitlines()
            if re.match(r"^#{1,4} ", line)}


def sections() -> dict[str, str]:
    """Heading (backticks removed) -> the text under it, up to the next heading."""
    out, name, buf, fence = {}, None, [], False
    for line in README.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and re.match(r"^#{1,4} ", line):
            if name:
                out[name] = "\n".join(buf)
            name, buf = line.lstrip("#").strip().replace("`", ""), []
        else:
            buf.append(line)
    out[name] = "\n".join(buf)
    return out


# -- cited sections -------------------------------------------------------------------------

def _sources():
    files = list((REPO / "phoenix_hook").rglob("*.py")) + [REPO / "install.sh", REPO / "dev.sh"]
    files += list((REPO / "hookscripts").glob("*"))
    return [f for f in files if f.is_file() and "__pycache__" not in f.parts]


def cited() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in _sources():
        text = " ".join(f.read_text(errors="replace").split())      # citations may wrap lines
        text = re.sub(r'"\s*f?"', "", text)                          # and Python's implicit joins
        for m in re.finditer(r"""README (?:section )?(?:'([^']+)'|"([^"]+)")""", text):
            out.setdefault(m.group(1) or m.group(2), []).append(str(f.relative_to(REPO)))
    return out


def test_messages_cite_only_sections_that_exist():
    found = cited()
    assert len(found) >= 5, found                 # the scan itself works
    missing = {name: where for name, where in found.items() if name not in headings()}
    assert not missing, f"README has no such section: {missing}"


def test_readme_refers_only_to_its_own_sections():
    refs = {" ".join(r.split()) for r in re.findall(r'[Ss]ee "([^"]+)"', README)}
    assert refs, "the scan found no references"
    assert refs <= headings(), refs - headings()


# -- the JSON examples ---------------------------------------------------------------------------

def json_blocks(section: str) -> list:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", sections()[section], re.S)]


def sketch_keys(text: str) -> set[str]:
    """Keys of a README sketch like {"kind", "vmids", "guests": [{"vmid", ...}]}."""
    return set(re.findall(r'[{,]\s*"([a-z_]+)"(?=\s*[:,}])', text))


def paths(doc, prefix="") -> set[str]:
    out = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(prefix + k)
            out |= paths(v, prefix + k + ".")
    elif isinstance(doc, list):
        for v in doc:
            out |= paths(v, prefix + "[].")
    return out


def names(doc) -> set[str]:
    return {p.rsplit(".", 1)[-1] for p in paths(doc)}


@pytest.fixture
def node(tmp_path, monkeypatch):
    """CT 951 (10.0.0.151, also configured on CT 910 of node pve2), CT 300 (10.0.0.153), a
    template; the host holds 10.0.0.151 so check finds a conflict without probing."""
    root = tmp_path / "pve"
    for nodename, vmid, ip, mac, extra in [("pve1", 951, "10.0.0.151/24", "52:54:00:00:09:51", ""),
                                           ("pve2", 910, "10.0.0.151/24", "52:54:00:00:09:10", ""),
                                           ("pve1", 300, "10.0.0.153/24", "52:54:00:00:03:00", ""),
                                           ("pve1", 900, "10.0.0.153/24", "52:54:00:00:09:00", "template: 1\n")]:
        d = root / "nodes" / nodename / "lxc"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{vmid}.conf").write_text(f"hostname: ct{vmid}\nnet0: name=eth0,bridge=vmbr9,hwaddr={mac},"
                                        f"ip={ip},gw=10.0.0.1,type=veth\n{extra}")
    conf = tmp_path / "c.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {root}\nnode = pve1\nlog_file = {tmp_path / 'log.jsonl'}\n"
                    f"run_dir = {tmp_path / 'run'}\n")
    monkeypatch.setattr(hostnet, "local_ipv4", lambda: frozenset({"10.0.0.151"}))
    monkeypatch.setattr(wire, "raw_access", lambda: None)
    return types.SimpleNamespace(conf=str(conf), tmp=tmp_path, log=tmp_path / "log.jsonl")


def output(capsys, *argv) -> str:
    cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return out


def test_check_json_example(node, capsys):
    [example] = json_blocks("JSON output")
    doc = json.loads(output(capsys, "check", "951", "--json", "--config", node.conf))
    assert doc["verdict"] == "conflict"
    assert paths(example) <= paths(doc), paths(example) - paths(doc)


def test_preflight_examples(node, capsys, tmp_path):
    [plan_out] = json_blocks("Before creating containers: phoenix-hook preflight")
    [plan_in] = json_blocks("Plans: shapes, several files, what is left out")
    # the input example is a plan the parser takes, every key of it used
    from phoenix_hook.checks.plan import parse_plan
    [entry] = parse_plan(plan_in, "README")
    e = plan_in[0]
    assert (entry.vmid, entry.nic, entry.bridge, entry.mac, entry.gw, entry.name, entry.type) == (
        e["vmid"], e["nic"], e["bridge"], e["mac"].lower(), e["gw"], e["name"], e["type"])
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"vmid": 951, "ip": "10.0.0.153/24", "bridge": "vmbr9"}]))
    doc = json.loads(output(capsys, "preflight", str(plan), "--no-probe", "--json", "--config", node.conf))
    assert doc["verdict"] == "conflict"
    assert paths(plan_out) <= paths(doc), paths(plan_out) - paths(doc)


def test_preflight_kinds_listed_are_the_kinds_the_code_has():
    code = ""
    for f in ("plan.py", "addressing.py", "preflight.py"):
        code += (REPO / "phoenix_hook" / "checks" / f).read_text()
    in_code = set(re.findall(r'add\("([a-z-]+)"', code)) | set(re.findall(r'\(\("([a-z-]+)", f?"', code)) \
        | set(re.findall(r'kind="([a-z-]+)"', code))
    table = sections()["Before creating containers: phoenix-hook preflight"]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    in_readme = {k for line in rows for k in re.findall(r"`([a-z-]+)`", line.split("|")[1])}
    assert len(in_code) >= 10 and in_readme == in_code, (in_readme ^ in_code)
    sources = {s for line in rows for s in re.findall(r"`([a-z]+)`", line.split("|")[2])}
    assert sources == {"plan", "config", "arp"}


def test_audit_sketch_and_kinds(node, capsys, monkeypatch):
    from phoenix_hook.checks.audit import ORDER
    text = sections()["The whole cluster: phoenix-hook audit"]
    doc = json.loads(output(capsys, "audit", "--json", "--config", node.conf))
    assert doc["findings"]
    # --live: CT 300 runs and is read, CT 951 runs and cannot be read (a skipped entry)
    from phoenix_hook.pve import files, live

    def interfaces(vmid):
        if vmid == 951:
            raise live.LiveError("lxc-info failed")
        return []
    monkeypatch.setattr(files, "guest_running", lambda vmid, gtype: vmid in (300, 951))
    monkeypatch.setattr(live, "container_interfaces", interfaces)
    live_doc = json.loads(output(capsys, "audit", "--live", "--json", "--config", node.conf))
    assert live_doc["live"]["skipped"] and live_doc["live"]["read"] == [300]
    assert sketch_keys(text) <= names(doc) | names(live_doc), sketch_keys(text) - names(doc) - names(live_doc)
    listing = text.split("where `kind` is one of")[1].split("\n\n")[0]
    listed = set(re.findall(r"`([a-z]+(?:-[a-z]+)*)`", listing))
    assert listed == set(ORDER)
    helptext = _help(capsys, "audit")
    for words in ("network or broadcast address", "gateways outside the subnet", "malformed"):
        assert words in helptext


def _help(capsys, command) -> str:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_scan_and_neigh_sketches(node, capsys, monkeypatch):
    import ipaddress

    from phoenix_hook.net import neigh, sweep
    res = sweep.SweepResult(net=ipaddress.IPv4Network("10.0.0.0/24"), link=types.SimpleNamespace(name="vmbr9"),
                            tag=None, source_ip="10.0.0.2", local=[("10.0.0.2", "vmbr9", "02:00:00:00:00:02")],
                            in_net=["10.0.0.2"], answers={"10.0.0.151": {SQUAT: 0.0}}, sent=256, elapsed_ms=700)
    monkeypatch.setattr(sweep, "sweep", lambda *a, **kw: res)
    text = sections()["Who else is on the subnet: phoenix-hook scan and phoenix-hook neigh"]
    scan_sketch, neigh_sketch = text.split("`neigh` lists")
    doc = json.loads(output(capsys, "scan", "--bridge", "vmbr9", "--json", "--config", node.conf))
    assert doc["rows"] and doc["silent"] and doc["local"]
    assert sketch_keys(scan_sketch) <= names(doc), sketch_keys(scan_sketch) - names(doc)
    entries = [neigh.Neighbour(ip="10.0.0.151", family=4, mac=SQUAT, dev="vmbr9", state=("REACHABLE",))]
    monkeypatch.setattr(neigh, "read_neighbours", lambda: (entries, "ip"))
    monkeypatch.setattr(neigh, "read_addresses", lambda dev=None: [])
    doc = json.loads(output(capsys, "neigh", "--json", "--config", node.conf))
    assert doc["rows"]
    assert sketch_keys(neigh_sketch) <= names(doc), sketch_keys(neigh_sketch) - names(doc)


def test_log_example_and_keys_table(node, capsys):
    env = {"PHOENIX_HOOK_CONF": node.conf}
    assert hook.main(["951", "pre-start"], environ=env, watchdog=False) == 1     # the host holds it
    (node.tmp / "pve" / "nodes" / "pve1" / "lxc" / "300.conf").write_text(
        "hostname: x\nnet0: name=eth0,bridge=vmbr9,hwaddr=52:54:00:00:03:00,ip=10.0.0.300/24,type=veth\n")
    good = Path(node.conf).read_text()
    Path(node.conf).write_text(good + "bogus = 1\n")          # a settings mistake the hook works around
    assert hook.main(["300", "pre-start"], environ=env, watchdog=False) == 0     # could not check
    Path(node.conf).write_text(good)                         # the commands would stop on it
    assert hook.main(["951", "pre-start"], environ=dict(env, PVE_MIGRATED_FROM="pve2"),
                     watchdog=False) == 0
    capsys.readouterr()
    records = [json.loads(x) for x in output(capsys, "log", "--json", "--config", node.conf).splitlines()]
    assert len(records) == 3
    produced = set().union(*(paths(r) for r in records))
    [example] = json_blocks("Past decisions: phoenix-hook log")
    assert paths(example) <= produced, paths(example) - produced
    table = sections()["Past decisions: phoenix-hook log"]
    documented = {k for line in table.splitlines() if line.startswith("| `")
                  for k in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    top = {k for r in records for k in r}
    assert top == documented, top ^ documented                # every key documented, no more
    for r in records:                                          # and the values the table names
        assert r["verdict"] in ("clear", "conflict", "error", "skipped")
        assert r["action"] in ("allowed", "refused", "warned")


def test_settings_json_sketch(node, capsys):
    text = sections()["phoenix-hook settings"]
    doc = json.loads(output(capsys, "settings", "--json", "--config", node.conf))
    assert sketch_keys(text) <= names(doc), sketch_keys(text) - names(doc)


def test_every_command_says_its_exit_codes(capsys):
    for name in cli.COMMANDS:
        if name == "demo":
            continue
        text = _help(capsys, name)
        assert "Exit 0" in text and re.search(r"\b2 (bad|mistakes)", text), (name, text)


def test_task_log_example_is_what_the_demo_and_hook_print():
    from phoenix_hook.cli import demo
    source = (REPO / "phoenix_hook" / "cli" / "demo.py").read_text()
    assert "TASK ERROR: hookscript error for {vmid} on pre-start: command '{SNIPPET} {vmid} " in source
    assert (f"TASK ERROR: hookscript error for 951 on pre-start: command '{demo.SNIPPET} 951 pre-start' "
            f"failed: exit code 1") in README

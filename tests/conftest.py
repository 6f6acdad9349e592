"""Shared fixtures: a namespace lab, a PVE config tree, and the hookscript run as PVE runs it.

Lab tests build their own network namespaces (phoenix_hook.net.lab.Lab, a
per-run prefix) and delete them afterwards, also when the test fails.
Nothing here sends a frame outside those namespaces.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HOOKSCRIPT = REPO / "hookscripts" / "phoenix-hook.py"
RESPONDER = Path(__file__).resolve().parent / "responder.py"
NODE = "pve1"
# PVE's PATH, behind a fake logger(1) that records what the hook sends to the journal.
FAKE_BIN = Path(__file__).resolve().parent / "fake_bin"
HOOK_ENV = {"PATH": f"{FAKE_BIN}:/sbin:/bin:/usr/sbin:/usr/bin", "LC_ALL": "C"}


LAB_PLAN = Path(__file__).resolve().parent / "data" / "lab_plan.json"


def find_fixtures() -> Path | None:
    """The real data in ../shared/fixtures beside the repo (CI: a fresh clone with shared/
    beside it), or where PHOENIX_FIXTURES points; None in a clone with nothing beside it."""
    candidates = []
    if os.environ.get("PHOENIX_FIXTURES"):
        candidates.append(Path(os.environ["PHOENIX_FIXTURES"]))
    candidates.append(REPO.parent / "shared" / "fixtures")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def shared_fixture(name: str) -> Path:
    """A file or folder of the real data in ../shared/fixtures; skips the test with the reason
    where it is absent (it comes from public repositories and is never copied into this repo)."""
    d = find_fixtures()
    if d is None or not (d / name).exists():
        pytest.skip(f"real data {name} not found: it lives in ../shared/fixtures beside the repo "
                    f"(or set PHOENIX_FIXTURES to its folder)")
    return d / name


def load_fixture_guests() -> dict[int, dict]:
    """The lab's containers: tests/data/lab_plan.json, written here in the deployment's plan shape."""
    data = json.loads(LAB_PLAN.read_text())
    return {int(k): v for k, v in data["lxc_configs"].items()}


def lxc_config(spec: dict, vmid: int, nets: dict[str, str] | None = None, extra: str = "") -> str:
    """A realistic /etc/pve/nodes/<node>/lxc/<vmid>.conf for one fixture container.

    net0 as pct writes it: name=eth0,bridge=vmbr0,gw=...,hwaddr=<MAC>,ip=<CIDR>,type=veth;
    nets replaces or adds netN lines (values as they appear after 'netN: ').
    """
    nc = spec["network_config"]
    lines = {
        "arch": "amd64",
        "cores": str(spec.get("cores", 2)),
        "hostname": spec["name"],
        "memory": str(spec.get("memory_mb", 2048)),
        "net0": f"name={nc['name']},bridge={nc['bridge']},gw={nc['gw']},hwaddr={spec['mac_address']},"
                f"ip={nc['ip']},type=veth",
        "ostype": "ubuntu",
        "rootfs": f"{spec.get('storage_pool', 'local-lvm')}:vm-{vmid}-disk-0,size={spec.get('storage_size_gb', 32)}G",
        "swap": "512",
        "unprivileged": "1" if spec.get("unprivileged", True) else "0",
    }
    lines.update(nets or {})
    body = "".join(f"{k}: {v}\n" for k, v in sorted(lines.items()))
    return body + extra


class PveTree:
    """A /etc/pve-shaped tree and a settings file under tmp_path."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.root = tmp_path / "etc-pve"
        self.conf = tmp_path / "phoenix-hook.conf"
        self.log_file = tmp_path / "log" / "decisions.jsonl"
        self.node = NODE
        self.fixture = load_fixture_guests()
        (self.root / "nodes" / NODE / "lxc").mkdir(parents=True)
        self.settings()

    def settings(self, extra_sections: str = "", **kw) -> Path:
        values = {"pve_root": str(self.root), "node": self.node, "log_file": str(self.log_file),
                  "run_dir": str(self.tmp / "run"),
                  "mode": "enforce", "on_error": "allow", "probe_timeout_ms": 250, "deadline_s": 10}
        values.update(kw)
        text = "[phoenix-hook]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
        self.conf.write_text(text + extra_sections)
        return self.conf

    def write(self, vmid: int, text: str, node: str | None = None) -> Path:
        from phoenix_hook.net.lab import write_tree
        write_tree(str(self.root), node or self.node, {vmid: text})
        return self.root / "nodes" / (node or self.node) / "lxc" / f"{vmid}.conf"

    def guest(self, vmid: int, node: str | None = None, nets: dict[str, str] | None = None,
              extra: str = "", spec_vmid: int | None = None) -> Path:
        """Write fixture container `spec_vmid` (default vmid) as guest vmid."""
        spec = self.fixture[spec_vmid or vmid]
        return self.write(vmid, lxc_config(spec, vmid, nets, extra), node)

    def spec(self, vmid: int) -> dict:
        s = self.fixture[vmid]
        return {"ip": s["network_config"]["ip"].split("/")[0], "cidr": s["network_config"]["ip"],
                "mac": s["mac_address"].lower(), "name": s["name"]}

    def records(self) -> list[dict]:
        if not self.log_file.exists():
            return []
        # Every line must be one whole JSON object: json.loads fails the test otherwise.
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def journal(self) -> list[str]:
        """What hook runs sent to the journal (the fake logger's record: its arguments)."""
        f = self.tmp / "journal.log"
        return f.read_text().splitlines() if f.exists() else []

    def env(self, extra: dict | None = None) -> dict:
        env = dict(HOOK_ENV, PHOENIX_HOOK_CONF=str(self.conf), PYTHONPATH=str(REPO),
                   PHOENIX_TEST_JOURNAL=str(self.tmp / "journal.log"))
        env.update(extra or {})
        return env


@pytest.fixture
def lab():
    from phoenix_hook.net import lab as labmod
    reason = labmod.available()
    if reason:
        print(f"skipping lab test: {reason}", file=sys.stderr)
        pytest.skip(reason)
    with labmod.Lab() as the_lab:
        yield the_lab
    left = [ns for ns in _netns_list() if ns.startswith(the_lab.prefix)]
    assert not left, f"lab namespaces left behind: {left}"


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.fixture(autouse=True, scope="session")
def _host_paths_untouched():
    """No test may write the real decision log or claims of this machine (a settings
    fallback to the defaults would): fail the session if one appears."""
    watched = ["/var/log/phoenix-hook", "/run/phoenix-hook"]
    before = {p for p in watched if os.path.exists(p)}
    yield
    appeared = [p for p in watched if os.path.exists(p) and p not in before]
    assert not appeared, f"tests wrote to this machine's own {appeared}; remove them and fix the test"


@pytest.fixture(autouse=True)
def journal(monkeypatch):
    """Hook code run inside the test process logs here, never to this host's journal."""
    from phoenix_hook import hook
    lines: list[str] = []
    monkeypatch.setattr(hook, "journal", lines.append)
    return lines


@pytest.fixture
def pve(tmp_path) -> PveTree:
    return PveTree(tmp_path)


def hook_argv(lab, vmid, phase="pre-start") -> list[str]:
    return ["ip", "netns", "exec", lab.pve, sys.executable, str(HOOKSCRIPT), str(vmid), phase]


@pytest.fixture
def run_hook(pve):
    """run_hook(lab, vmid, phase="pre-start", env_extra=None) -> (exit code, output, new decision records).

    Exactly as PVE runs a hookscript (REFERENCE section 1): `<script> <vmid>
    <phase>` as root, stdin /dev/null, LC_ALL=C, the minimal PATH, cwd "/".
    """
    def run(lab, vmid, phase="pre-start", env_extra=None, timeout=30):
        lab.wait_link_ready()
        before = len(pve.records())
        p = subprocess.run(hook_argv(lab, vmid, phase), env=pve.env(env_extra), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/",
                           timeout=timeout)
        return p.returncode, p.stdout, pve.records()[before:]
    return run


@pytest.fixture
def run_cli(pve):
    """run_cli(lab, *args) -> (exit code, stdout, stderr): python -m phoenix_hook in the PVE namespace."""
    def run(lab, *args, env_extra=None, timeout=30):
        lab.wait_link_ready()
        p = subprocess.run(["ip", "netns", "exec", lab.pve, sys.executable, "-m", "phoenix_hook", *args],
                           env=pve.env(env_extra), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, cwd="/", timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    return run


class Responder:
    """A tests/responder.py process in a lab namespace and the log it writes."""

    def __init__(self, proc, log: Path):
        self.proc, self.log = proc, log

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def wait_for(self, pred, timeout: float = 5.0) -> list[str]:
        """Wait until pred(lines) holds (frames cross the veth asynchronously); fail if it never does."""
        import time
        end = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if pred(lines):
                return lines
            if time.monotonic() >= end:
                raise AssertionError(f"responder log never matched; it holds: {lines[-20:]}")
            time.sleep(0.01)


@pytest.fixture
def responder(lab, tmp_path):
    """responder(ns, *args) -> Responder: tests/responder.py running in ns until the lab closes."""
    n = iter(range(1, 1000))

    def start(ns, *args) -> Responder:
        log = tmp_path / f"responder{next(n)}.log"
        log.touch()
        proc = lab.spawn(ns, [sys.executable, str(RESPONDER), "--log", str(log), *args], ready="ready")
        return Responder(proc, log)
    return start


def in_ci(environ=os.environ) -> bool:
    """CI is on when CI is set to anything but "", "false" or "0" (CI services set "true",
    some "1" or their own name)."""
    return environ.get("CI", "").strip().lower() not in ("", "false", "0")


def _skip_is_failure(item) -> bool:
    return in_ci() and (item is None or item.get_closest_marker("may_skip_in_ci") is None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (as root, with shared/ beside the clone) a skip means a missing dependency or
    fixture, not a choice: report it as a failure, so a green CI run has really run the lab
    tests. Tests the kernel itself may rule out carry may_skip_in_ci."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and _skip_is_failure(item):
        reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped in CI, which must run every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped while it is collected (a module-level
    importorskip): in CI that is a failure too, not a silent hole."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci():
        reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"{collector.nodeid} skipped while collected in CI: {reason}"


class Clock:
    """A simulated monotonic clock for probe.run: unit tests never sleep."""
    def __init__(self):
        self.now = 5000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """probe.run on a simulated clock; the fake wires advance it in receive()."""
    import functools

    from phoenix_hook.net import probe
    c = Clock()
    monkeypatch.setattr(probe, "run", functools.partial(probe.run, clock=c))
    return c

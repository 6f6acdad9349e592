"""The VM lab's tests (tests/vmlab/test_*.py), run on Debian's own kernel in a qemu VM.

The host kernel has no 802.1Q devices and no bridge VLAN filtering, so the
VLAN lab tests run in a VM (tests/vmlab/harness.py): one boot runs pytest on
the selected VM tests there, and each of them is reported here as its own
test, failing with what the VM-side pytest said about it. Where qemu, the
kernel package or busybox-static is missing these tests skip with the reason
(CI installs them: ./dev.sh vmlab).
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO
from vmlab import harness

VMLAB = REPO / "tests" / "vmlab"
# Generous: TCG is slow, and slower still on a busy machine. The whole set takes about a minute.
VM_TIMEOUT_S = float(os.environ.get("PHOENIX_VMLAB_TIMEOUT", "1200"))


def vm_tests() -> list[str]:
    """'<module>::<function>' for every test function in tests/vmlab/test_*.py (read, not imported)."""
    out = []
    for path in sorted(VMLAB.glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        out += [f"{path.stem}::{node.name}" for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")]
    return out


class VmRun:
    def __init__(self, result: harness.Result | None, wanted: list[str], results: dict[str, list[dict]]):
        self.result, self.wanted, self.results = result, wanted, results

    def report(self) -> str:
        r = self.result
        return (f"VM pytest exit {r.rc}; VM-side output:\n{r.output[-8000:]}\n"
                f"-- VM console (last lines):\n{r.console[-2000:]}")


def parse_junit(path: Path) -> dict[str, list[dict]]:
    """{'<module>::<function>': [{'name', 'outcome', 'message', 'text'}]} from the VM's junit XML."""
    out: dict[str, list[dict]] = {}
    if not path.is_file():
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")[-1]
        name = case.get("name", "")
        outcome, message, text = "passed", "", ""
        for kind in ("failure", "error", "skipped"):
            el = case.find(kind)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                message, text = el.get("message", ""), el.text or ""
                break
        logs = "".join(f"\n-- {tag}:\n{el.text}" for tag in ("system-out", "system-err")
                       for el in case.findall(tag) if _says_something(el.text))
        out.setdefault(f"{module}::{name.split('[')[0]}", []).append(
            {"name": name, "outcome": outcome, "message": message, "text": text + logs,
             "time": float(case.get("time") or 0)})
    return out


def _says_something(text: str | None) -> bool:
    """Captured output with more than pytest's empty "Captured ..." section headers."""
    return any(line.strip() and not re.fullmatch(r"-+ Captured .* -+", line.strip())
               for line in (text or "").splitlines())


_EARLY: dict = {}              # the VM started at collection time (start_early), if it was


def _selected(items) -> list[str]:
    return sorted({item.callspec.params["vm_test"] for item in items
                   if hasattr(item, "callspec") and "vm_test" in item.callspec.params})


def _start(wanted: list[str], io_dir: Path, nice: int = 0) -> harness.Running:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
            "--junitxml=/run/vmlab/junit.xml", "-o", "junit_logging=all", "-o", "junit_family=xunit1",
            *(f"tests/vmlab/{t.split('::')[0]}.py::{t.split('::')[1]}" for t in wanted)]
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",          # no plugin imports (hypothesis: seconds in TCG)
           "HYPOTHESIS_STORAGE_DIRECTORY": "/tmp/hypothesis"}   # the VM's own tmpfs: no database kept
    for passed in ("CI", "PHOENIX_FIXTURES"):
        if os.environ.get(passed):
            env[passed] = os.environ[passed]
    # One vCPU where the machine has two: the other stays free for the host's own tests.
    cpus = 2 if (os.cpu_count() or 1) > 2 else 1
    return harness.start(argv, cwd=str(REPO), env=env, timeout=VM_TIMEOUT_S, io_dir=io_dir, cpus=cpus, nice=nice)


def start_early(session) -> None:
    """Called by tests/conftest.py when collection is done: boot the VM now, in the background,
    so its minutes under TCG pass while the host's own tests run (qemu at a lower priority)."""
    mine = [item for item in session.items if getattr(item, "module", None) is sys.modules[__name__]]
    if not mine or harness.unavailable() or os.environ.get("PHOENIX_VMLAB_EARLY") == "0":
        return
    wanted = _selected(mine) or vm_tests()
    io_dir = Path(tempfile.mkdtemp(prefix="phoenix-vmlab-"))
    _EARLY["run"] = (wanted, io_dir, _start(wanted, io_dir, nice=10))


def stop_early() -> None:
    """Called at the end of the session: a VM still running (the run was cut short) is killed."""
    early = _EARLY.pop("run", None)
    if early:
        early[2].kill()
        shutil.rmtree(early[1], ignore_errors=True)


@pytest.fixture(scope="module")
def vm_run(request, tmp_path_factory) -> VmRun:
    reason = harness.unavailable()
    if reason:
        pytest.skip(reason)
    # Only the VM tests this run selected (pytest -k, or one node id), in one boot.
    mine = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    wanted = _selected(mine) or vm_tests()
    early = _EARLY.get("run")
    if early and early[0] == wanted:
        _wanted, io_dir, running = early
    else:
        io_dir = tmp_path_factory.mktemp("vmlab")
        running = _start(wanted, io_dir)
    result = running.wait()
    run = VmRun(result, wanted, parse_junit(io_dir / "junit.xml"))
    cases = sorted((c for cs in run.results.values() for c in cs), key=lambda c: -c["time"])
    line = (f"vmlab: {len(wanted)} VM tests, VM exit {result.rc}, {result.seconds:.1f} s in all"
            + (" (started at collection, beside the host's tests)" if early else "")
            + f" (root mounted at {result.boot_seconds} s uptime; tests {sum(c['time'] for c in cases):.1f} s; "
            f"slowest: " + ", ".join(f"{c['name']} {c['time']:.1f} s" for c in cases[:5]) + ")")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capman is not None:   # shown in the run's output even with -q
        with capman.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    else:
        print(line, file=sys.stderr)
    return run


@pytest.mark.parametrize("vm_test", vm_tests())
def test_in_vm(vm_run, vm_test):
    cases = vm_run.results.get(vm_test)
    if not cases:
        pytest.fail(f"{vm_test} did not run in the VM\n{vm_run.report()}", pytrace=False)
    bad = [c for c in cases if c["outcome"] in ("failed", "error")]
    if bad:
        pytest.fail("\n\n".join(f"{c['name']} {c['outcome']} in the VM: {c['message']}\n{c['text']}"
                                for c in bad), pytrace=False)
    skipped = [c for c in cases if c["outcome"] == "skipped"]
    if skipped:
        pytest.skip("; ".join(f"{c['name']} skipped in the VM: {c['message']}" for c in skipped))


def test_vm_session_ran_whole(vm_run):
    """The VM's pytest ended normally (no collection error, no crash, no timeout) and ran what was asked."""
    assert vm_run.result.rc in (0, 1), vm_run.report()
    missing = [t for t in vm_run.wanted if t not in vm_run.results]
    assert not missing, f"not run in the VM: {missing}\n{vm_run.report()}"
    unknown = [t for t in vm_run.results if t not in vm_tests()]
    assert not unknown, f"VM tests the host does not list (not top-level test functions?): {unknown}"

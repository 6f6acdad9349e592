"""`phoenix-hook demo`: the outage replay builds its lab, shows both outcomes, and leaves nothing."""
import os
import re
import signal
import subprocess
import sys

import pytest

from phoenix_hook.net import lab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(lab.available() is not None, reason=f"demo: {lab.available()}")


def _namespaces(prefix=""):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(prefix) and line.strip()}


def _lab_prefix(out: str) -> str:
    """The demo names its lab on its first line: 'Lab phx1a2b3c: ...'."""
    m = re.search(r"^Lab (phx[0-9a-f]+):", out, re.M)
    assert m, out
    return m.group(1) + "-"


def _demo():
    return subprocess.Popen([sys.executable, "-m", "phoenix_hook", "demo"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_demo_refuses_the_squatted_container_and_starts_the_clean_one():
    p = _demo()
    out = p.communicate(timeout=60)[0]
    assert p.returncode == 0, out
    assert "CT 950 net0 10.0.0.150 is free on vmbr0" in out
    assert "CT 951 net0 10.0.0.151 is in use by 16:0d:a0:c0:b9:1b" in out
    assert "start refused" in out
    log = out[out.index("$ phoenix-hook log"):].splitlines()
    assert any(x.split()[2:6] == ["CT", "950", "clear", "allowed"] for x in log), out
    assert any(x.split()[2:6] == ["CT", "951", "conflict", "refused"] and "answered by 16:0d:a0:c0:b9:1b" in x
               for x in log), out
    assert _namespaces(_lab_prefix(out)) == set()


def test_demo_tells_the_story_in_order():
    """The plan is explained before it is used; the squatted container was refused (it never
    started); the task-log line is PVE's as the README shows it; it ends with next steps."""
    p = _demo()
    out = p.communicate(timeout=60)[0]
    assert p.returncode == 0, out
    assert out.index("a JSON file") < out.index("the address of CT 951")
    assert "CT 910" not in out                                  # only what matters to the story
    assert "CT 951 was refused: it never started" in out and "stopped" not in out
    readme = open(os.path.join(REPO, "README.md")).read()
    task_error = next(x.strip() for x in out.splitlines() if x.strip().startswith("TASK ERROR:"))
    assert task_error in readme, task_error
    tail = out[out.index("Next steps"):]
    for step in ("sudo ./install.sh --attach all", "phoenix-hook check 951", "phoenix-hook log"):
        assert step in tail


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_removes_its_lab_when_interrupted(sig):
    p = _demo()
    seen = []
    for line in p.stdout:           # interrupt once the lab is built and a hook runs
        seen.append(line)
        if "pct start 950" in line:
            assert len(_namespaces(_lab_prefix("".join(seen)))) >= 3      # pve, gw, rogue
            p.send_signal(sig)
            break
    out = "".join(seen) + p.communicate(timeout=30)[0]
    assert p.returncode == 130, out
    assert "interrupted: lab removed" in out
    assert _namespaces(_lab_prefix(out)) == set()

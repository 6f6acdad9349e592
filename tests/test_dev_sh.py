"""dev.sh: `./dev.sh demo` installs what the demo needs, not the test tools and peers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS_AND_TEST_TOOLS = {"iputils-arping", "arp-scan", "nmap", "dnsmasq-base", "hyperfine", "logrotate",
                        "kea-dhcp4-server", "isc-dhcp-server"}


def _run(tmp_path, *argv):
    """dev.sh with a PATH that has bash, coreutils and python3 but no ip, arping, nmap, ...:
    everything looks missing. apt-get is a stand-in that logs what it is asked for."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("bash", "env", "dirname", "id", "tr", "sed", "tail", "touch", "cat", "python3"):
        path = shutil.which(tool)
        assert path, tool
        (bin_ / tool).symlink_to(path)
    log = tmp_path / "apt.log"
    (bin_ / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bin_ / "apt-get").chmod(0o755)
    env = {"PATH": str(bin_), "HOME": str(tmp_path), "LC_ALL": "C",
           "PHOENIX_DEV_VENV": sys.prefix}           # this venv already holds the package: no pip
    p = subprocess.run([str(bin_ / "bash"), str(REPO / "dev.sh"), *argv], env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    asked = set()
    if log.exists():
        for line in log.read_text().splitlines():
            if line.startswith("install"):
                asked |= {w for w in line.split()[1:] if not w.startswith("-")}
    if os.geteuid() != 0:       # not root: dev.sh names what is missing instead of installing it
        for line in p.stderr.splitlines():
            if "missing system packages:" in line:
                asked |= set(line.split(":", 2)[2].split("(")[0].split())
    return p, asked


def test_demo_installs_only_what_the_demo_needs(tmp_path):
    p, asked = _run(tmp_path, "demo", "--help")
    assert p.returncode == 0, p.stderr
    assert "usage: phoenix-hook demo" in p.stdout
    assert "iproute2" in asked                     # the lab's ip command: needed
    assert not asked & PEERS_AND_TEST_TOOLS, asked
    assert "test dependencies" not in p.stderr


def test_setup_for_the_tests_installs_the_peers(tmp_path):
    """The same PATH, for the tests: the peers and test tools are asked for (so the
    demo test above could fail)."""
    _p, asked = _run(tmp_path, "setup")
    assert {"iproute2", "nmap", "arp-scan", "logrotate"} <= asked, asked

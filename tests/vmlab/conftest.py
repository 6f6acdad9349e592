"""Tests in this folder run only inside the VM lab (PHOENIX_IN_VM=1, set by harness.run).

On the host they are not collected: tests/test_vlan_vm.py runs them in the
VM and reports each one as its own host-side test. To run them by hand:
    sudo python3 tests/vmlab/harness.py -- .venv/bin/python -m pytest -p no:cacheprovider tests/vmlab
"""
from __future__ import annotations

import os

import pytest

from conftest import PveTree

IN_VM = os.environ.get("PHOENIX_IN_VM") == "1"

if not IN_VM:
    collect_ignore_glob = ["test_*.py"]


class SlowPveTree(PveTree):
    """Settings with a deadline for a slow machine: the VM emulates its CPU (TCG), and on a
    busy host it can stall for seconds. A check that runs into deadline_s would say "could
    not check" and fail a test for the emulator's slowness, not for what it tests."""

    def settings(self, extra_sections: str = "", **kw):
        kw.setdefault("deadline_s", 60)
        return super().settings(extra_sections, **kw)


@pytest.fixture
def pve(tmp_path) -> PveTree:
    return SlowPveTree(tmp_path)

"""Tests in this folder run only inside the VM lab (PHOENIX_IN_VM=1, set by harness.run).

On the host they are not collected: tests/test_vlan_vm.py runs them in the
VM and reports each one as its own host-side test. To run them by hand:
    sudo python3 tests/vmlab/harness.py -- .venv/bin/python -m pytest -p no:cacheprovider tests/vmlab
"""
from __future__ import annotations

import os

IN_VM = os.environ.get("PHOENIX_IN_VM") == "1"

if not IN_VM:
    collect_ignore_glob = ["test_*.py"]

"""The VM lab: Debian's own kernel under qemu, for what the host kernel cannot do (802.1Q, VLAN filtering).

harness.py boots it; the test_*.py files here run only inside it (this
folder's conftest.py keeps a host run from collecting them), and
tests/test_vlan_vm.py is the host-side test that boots the VM, runs them
there and reports each one's result.
"""

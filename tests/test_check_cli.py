"""`phoenix-hook check --all` with a `node` that has no guests: a wrong node would check
nothing and pass; it names the nodes that have guests and exits 2. No wire is touched."""
from __future__ import annotations

import pytest

from phoenix_hook.cli import main as cli


@pytest.fixture
def tree(tmp_path):
    for node, vmid in (("pve1", 951), ("pve2", 952)):
        d = tmp_path / "pve" / "nodes" / node / "lxc"
        d.mkdir(parents=True)
        (d / f"{vmid}.conf").write_text("net0: name=eth0,bridge=vmbr9,ip=10.0.0.1/24\n")
    (tmp_path / "pve" / "nodes" / "pve3").mkdir()            # a node without guests

    def conf(node):
        f = tmp_path / "c.conf"
        f.write_text(f"[phoenix-hook]\npve_root = {tmp_path}/pve\nnode = {node}\n")
        return str(f)
    return conf


@pytest.mark.parametrize("node", ["pve9", "pve3", "PVE1"])
def test_check_all_on_a_node_without_guests_names_the_nodes_and_exits_2(tree, capsys, node):
    conf = tree(node)
    assert cli.main(["--config", conf, "check", "--all"]) == 2
    err = capsys.readouterr().err
    assert err == (f"phoenix-hook: node {node} has no guests; nodes with guests: pve1, pve2; "
                   f"set node in {conf} to this node's name as in /etc/pve/nodes/\n")


def test_check_all_in_a_cluster_without_any_guest_is_nothing_to_check(tmp_path, capsys):
    (tmp_path / "pve" / "nodes" / "pve1").mkdir(parents=True)
    f = tmp_path / "c.conf"
    f.write_text(f"[phoenix-hook]\npve_root = {tmp_path}/pve\nnode = pve1\n")
    assert cli.main(["--config", str(f), "check", "--all"]) == 0
    assert "no guests to check on node pve1" in capsys.readouterr().out

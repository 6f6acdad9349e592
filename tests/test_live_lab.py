"""`audit --live` on a node: containers read with a real nsenter and ip, VMs through a stand-in `qm`.

The lab's guest namespaces play running containers (their bridge ports named
as PVE names them, veth951i0). What stands in for PVE:
- `lxc-info` on PATH prints `PID:  <pid>` for a running container: the PID of a
  process inside that container's namespace, so `nsenter -t PID --net -- ip
  --json a` (PVE::LXC::get_interfaces) runs for real and reads the namespace;
- the container's monitor socket "@/var/lib/lxc/<vmid>/command", which PVE's
  running test looks for, bound by a process in the node's namespace;
- `qm guest cmd <vmid> network-get-interfaces` printing a guest agent's answer
  (VM 120), or qemu-server's "No QEMU guest agent configured" (VM 121);
- /run/qemu-server/<vmid>.pid naming a live process, on a tmpfs mounted over /run
  in a private mount namespace of the command alone.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from phoenix_hook.net import lab as labmod

pytestmark = pytest.mark.skipif(labmod.available() is not None, reason=f"live lab: {labmod.available()}")

VM120_MAC = "bc:24:11:00:01:20"
HOOK = "hookscript: local:snippets/phoenix-hook.py\n"    # guarded guests: no coverage findings
AGENT_120 = [
    {"name": "lo", "hardware-address": "00:00:00:00:00:00",
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]},
    {"name": "ens18", "hardware-address": VM120_MAC,
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.0.120", "prefix": 24},
                      {"ip-address-type": "ipv4", "ip-address": "10.0.0.99", "prefix": 24},
                      {"ip-address-type": "ipv6", "ip-address": "fe80::be24:11ff:fe00:120", "prefix": 64}],
     "statistics": {"rx-bytes": 1, "rx-packets": 1, "rx-errs": 0, "rx-dropped": 0,
                    "tx-bytes": 1, "tx-packets": 1, "tx-errs": 0, "tx-dropped": 0}},
]

MONITOR = """\
import socket, sys, time
socks = []
for vmid in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\\0/var/lib/lxc/%s/command" % vmid)
    s.listen(1)
    socks.append(s)
print("ready", flush=True)
time.sleep(3600)
"""


def stand_ins(tmp_path, pids: dict) -> str:
    """A bin directory with lxc-info and qm as PVE's would answer for this lab."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cases = "".join(f"  {vmid}) echo 'PID:          {pid}' ;;\n" for vmid, pid in pids.items())
    (bindir / "lxc-info").write_text(
        "#!/bin/sh\n# lxc-info -n VMID -p, as lxc-info prints it for a running container\n"
        "[ \"$1\" = -n ] && [ \"$3\" = -p ] || exit 1\n"
        f"case \"$2\" in\n{cases}  *) ;;\nesac\nexit 0\n")
    (tmp_path / "agent-120.json").write_text(json.dumps(AGENT_120, indent=4))
    (bindir / "qm").write_text(
        "#!/bin/sh\n# qm guest cmd VMID network-get-interfaces\n"
        "[ \"$1 $2 $4\" = 'guest cmd network-get-interfaces' ] || exit 2\n"
        f"case \"$3\" in\n  120) cat {tmp_path / 'agent-120.json'} ;;\n"
        "  121) echo 'No QEMU guest agent configured' >&2; exit 255 ;;\n"
        "  *) echo \"VM $3 not running\" >&2; exit 255 ;;\nesac\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    return str(bindir)


@pytest.fixture
def node(lab, pve, tmp_path):
    f = pve.fixture
    mac = {v: f[v]["mac_address"].lower() for v in f}
    for vmid in (910, 951, 952, 953):
        pve.guest(vmid, extra=HOOK)
    qemu = pve.root / "nodes" / pve.node / "qemu-server"
    qemu.mkdir(parents=True)
    (qemu / "120.conf").write_text(f"{HOOK}agent: 1\nname: web\nnet0: virtio={VM120_MAC.upper()},bridge=vmbr0\n"
                                   f"ipconfig0: ip=10.0.0.120/24,gw=10.0.0.1\n")
    (qemu / "121.conf").write_text(f"{HOOK}name: noagent\nnet0: virtio=BC:24:11:00:01:21,bridge=vmbr0\n"
                                   "ipconfig0: ip=10.0.0.121/24,gw=10.0.0.1\n")
    lab.add_host_address("10.0.0.1/24")
    # CT 951 was rebuilt by hand: its config says 10.0.0.151, it holds 10.0.0.219
    ns951 = lab.add_host("ct951", "10.0.0.219/24", mac[951], port="veth951i0")
    ns952 = lab.add_host("ct952", "10.0.0.152/24", mac[952], port="veth952i0")
    lab.wait_link_ready()
    pids = {951: lab.spawn(ns951, ["sleep", "3600"]).pid, 952: lab.spawn(ns952, ["sleep", "3600"]).pid}
    lab.spawn(lab.pve, [sys.executable, "-c", MONITOR, "951", "952"], ready="ready")
    return lab, pve, stand_ins(tmp_path, pids)


def audit_live(lab, pve, bindir, *args, vm_pids=(120, 121)):
    """`phoenix-hook audit --live` in the node's namespace; VMs 'running' by their pid files."""
    pidfiles = " && ".join(f"echo $$ > /run/qemu-server/{v}.pid" for v in vm_pids) or "true"
    shell = (f"mount -t tmpfs tmpfs /run && mkdir /run/qemu-server && {pidfiles} && "
             f"exec {sys.executable} -m phoenix_hook audit --live {' '.join(args)}")
    env = pve.env({"PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin"})
    p = subprocess.run(["ip", "netns", "exec", lab.pve, "unshare", "-m", "--propagation", "private",
                        "sh", "-c", shell], env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def test_audit_live_reads_what_guests_really_hold(node):
    lab, pve, bindir = node
    code, out, err = audit_live(lab, pve, bindir, "--json")
    doc = json.loads(out)
    assert code == 1, err
    got = [(f["kind"], f["vmids"], f["ip"]) for f in doc["findings"]]
    assert got == [("duplicate-ip", [120, 910], "10.0.0.99"),   # VM 120 holds CT 910's address
                   ("drift", [120], "10.0.0.120"),              # ... besides its own
                   ("drift", [951], "10.0.0.151")]              # CT 951 holds .219, not .151
    drift951 = doc["findings"][2]["detail"]
    assert drift951 == "CT 951 net0 (eth0): configured with 10.0.0.151, but holds 10.0.0.219/24"
    # CT 952 holds what its config says (read from its own namespace): no finding
    assert doc["live"]["read"] == [120, 951, 952]
    assert doc["live"]["stopped"] == 2                          # CT 910 and CT 953: no monitor socket
    [skip] = doc["live"]["skipped"]
    assert (skip["vmid"], skip["kind"]) == (121, "no-agent")
    assert "VM 121 skipped: No QEMU guest agent configured" in err


def test_without_live_nothing_is_read(node):
    lab, pve, bindir = node
    p = subprocess.run(["ip", "netns", "exec", lab.pve, sys.executable, "-m", "phoenix_hook", "audit", "--json"],
                       env=pve.env({"PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin"}), capture_output=True,
                       text=True, timeout=60, cwd="/")
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["findings"] == [] and "live" not in doc


def test_a_container_that_stopped_in_between_is_not_running(node, tmp_path):
    """PVE's running test says yes, lxc-info then has no PID (it stopped in between): not an error."""
    lab, pve, bindir = node
    (tmp_path / "bin" / "lxc-info").write_text("#!/bin/sh\nexit 0\n")
    code, out, _err = audit_live(lab, pve, bindir, "--json", vm_pids=())
    doc = json.loads(out)
    assert code == 0 and doc["findings"] == [] and doc["live"]["read"] == []
    assert doc["live"]["stopped"] == 6


@pytest.mark.may_skip_in_ci
def test_no_lxc_tools_here_is_could_not_check(node, tmp_path):
    """Without lxc-info (not a PVE node) and nothing else read: exit 3 naming the fix."""
    import shutil
    if shutil.which("lxc-info", path="/usr/sbin:/usr/bin:/sbin:/bin"):
        pytest.skip("this machine has a real lxc-info")
    lab, pve, bindir = node
    (tmp_path / "bin" / "lxc-info").unlink()
    code, _out, err = audit_live(lab, pve, bindir, vm_pids=())
    assert code == 3 and "lxc-info is not installed here" in err and "--source api" in err

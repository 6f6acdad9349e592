"""`phoenix-hook demo`: replay the outage phoenix-hook prevents, in a throwaway lab.

Everything happens inside network namespaces this command creates and
removes (also on Ctrl-C): a "Proxmox host" with bridge vmbr0, the LAN's
gateway, a running container, and a rogue device squatting on the address
the plan gave CT 951. The real hookscript then runs for a clean container
and for the squatted one, exactly as PVE would call it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from importlib import resources

from phoenix_hook.cli.main import CannotCheck

ROGUE_MAC = "16:0d:a0:c0:b9:1b"
CLEAN, SQUATTED = "950", "951"
SNIPPET = "/var/lib/vz/snippets/phoenix-hook.py"     # where install.sh puts it on a node


def add_parser(sub):
    p = sub.add_parser("demo", help="replay a duplicate-IP outage in a throwaway namespace lab",
                       description="Build a network-namespace lab (root needed; nothing touches "
                       "this machine's own interfaces), run the real hookscript for a clean and a "
                       "squatted container, show both outcomes, and remove the lab.")
    return p


def _lxc_conf(entry: dict) -> str:
    net = entry["network_config"]
    return (f"arch: amd64\nhostname: {entry['name']}\nmemory: 2048\nostype: ubuntu\n"
            f"net0: name={net['name']},bridge={net['bridge']},firewall=1,gw={net['gw']},"
            f"hwaddr={entry['mac_address']},ip={net['ip']},type=veth\n"
            f"rootfs: local-lvm:vm-{entry['name']}-disk-0,size=32G\n")


def _say(text: str = "") -> None:
    print(text, flush=True)


def run(args) -> int:
    from phoenix_hook.net import lab as labmod
    why = labmod.available()
    if why:
        raise CannotCheck(f"the demo {why}; run it as root: sudo phoenix-hook demo")
    plan = json.loads(resources.files("phoenix_hook").joinpath("demo_plan.json").read_text())["lxc_configs"]
    tmp = tempfile.mkdtemp(prefix="phoenix-demo-")
    old_term = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with labmod.Lab() as lab:
            return _demo(lab, plan, tmp)
    except KeyboardInterrupt:
        _say("\ninterrupted: lab removed")
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(tmp, ignore_errors=True)


def _demo(lab, plan: dict, tmp: str) -> int:
    from phoenix_hook.net.lab import write_tree
    node = "pve-demo"
    write_tree(os.path.join(tmp, "pve"), node, {int(k): _lxc_conf(v) for k, v in plan.items()})
    conf = os.path.join(tmp, "phoenix-hook.conf")
    with open(conf, "w") as f:
        f.write(f"[phoenix-hook]\npve_root = {tmp}/pve\nnode = {node}\n"
                f"log_file = {tmp}/decisions.jsonl\nrun_dir = {tmp}/run\nprobe_timeout_ms = 1000\n")
    squat_ip = plan[SQUATTED]["network_config"]["ip"].split("/")[0]
    gw = plan[SQUATTED]["network_config"]["gw"]
    _say(f"Lab {lab.prefix}: namespaces only, removed when the demo ends.")
    _say("\nThe outage it replays: an orchestrator creates containers from a plan, a JSON file that")
    _say("gives each container its ID, name, bridge and static IP. This plan (in a real one's shape):")
    for vmid, e in sorted(plan.items()):
        _say(f"  CT {vmid} {e['name']:<24} {e['network_config']['ip']:<16} on {e['network_config']['bridge']}")
    _say(f"A device outside the plan had already taken {squat_ip}, the address of CT {SQUATTED}. The")
    _say("container started anyway, and the two fought over the address. Here the same LAN:")
    lab.add_host_address("10.0.0.2/24")
    lab.add_host("gw", f"{gw}/24")
    lab.add_host("rogue", f"{squat_ip}/24", mac=ROGUE_MAC)
    _say(f"  {lab.pve}: the Proxmox host with bridge vmbr0; the plan's configs in {tmp}/pve")
    _say(f"  the gateway {gw}, and the device outside the plan ({ROGUE_MAC}) on {squat_ip}")
    _say("\nphoenix-hook is attached to the containers as their hookscript: PVE runs it before")
    _say("each start, and a non-zero exit aborts the start.")
    env = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "LC_ALL": "C", "PHOENIX_HOOK_CONF": conf,
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    script = os.path.join(env["PYTHONPATH"], "hookscripts", "phoenix-hook.py")
    # The real hookscript file in a checkout; the same entry point when installed.
    hook = [sys.executable, script] if os.path.exists(script) else [sys.executable, "-m", "phoenix_hook.hook"]
    outcomes = {}
    for vmid in (CLEAN, SQUATTED):
        _say(f"\n$ pct start {vmid}    # PVE runs: {SNIPPET} {vmid} pre-start")
        p = lab.run(lab.pve, hook + [vmid, "pre-start"], env=env, cwd="/", stdin=subprocess.DEVNULL)
        for line in (p.stdout + p.stderr).splitlines():
            _say(f"  {line}")
        outcomes[vmid] = p.returncode
        if p.returncode == 0:
            _say(f"  => exit 0: PVE goes on and starts CT {vmid}")
        else:
            _say(f"  => exit {p.returncode}: PVE aborts the start; the task log ends with")
            _say(f"  TASK ERROR: hookscript error for {vmid} on pre-start: command '{SNIPPET} {vmid} "
                 f"pre-start' failed: exit code {p.returncode}")
    ok = outcomes[CLEAN] == 0 and outcomes[SQUATTED] == 1
    _say("\nEvery decision is logged (one JSON line per start); read them back:")
    _say("$ phoenix-hook log")
    p = subprocess.run([sys.executable, "-m", "phoenix_hook", "log", "--config", conf], env=env, cwd="/",
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    for line in (p.stdout + p.stderr).splitlines():
        _say(f"  {line}")
    if not ok:
        _say("\nUnexpected outcome: see the lines above.")
        return 1
    _say(f"\nCT {SQUATTED} was refused: it never started, so nothing fought over {squat_ip}; "
         f"CT {CLEAN} started.")
    _say("\nNext steps, on a Proxmox VE node (README 'install.sh'):")
    steps = [("sudo ./install.sh --attach all", "install it on this node and attach it to every container"),
             ("phoenix-hook check 951", "check a guest by hand, now"),
             ("phoenix-hook preflight plan.json", "check a plan before pct create"),
             ("phoenix-hook log", "the decisions of past starts")]
    try:
        from importlib.util import find_spec
        if find_spec("phoenix_hook.cli.watch") is not None:
            steps.append(("phoenix-hook watch", "keep watching the LAN for address conflicts"))
    except (ImportError, ValueError):
        pass
    width = max(len(c) for c, _ in steps)
    for cmd, what in steps:
        _say(f"  {cmd:<{width}}  {what}")
    return 0

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
CLEAN, SQUATTED, RUNNING = "950", "951", "910"


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
    _say(f"  {lab.pve}: the Proxmox host, bridge vmbr0, guest configs in {tmp}/pve")
    lab.add_host_address("10.0.0.2/24")
    lab.add_host("gw", f"{gw}/24")
    _say(f"  gateway {gw}")
    running = plan[RUNNING]
    lab.add_host("ct910", running["network_config"]["ip"], mac=running["mac_address"].lower())
    _say(f"  CT {RUNNING} {running['name']} is running at {running['network_config']['ip']}")
    lab.add_host("rogue", f"{squat_ip}/24", mac=ROGUE_MAC)
    _say(f"  a device outside the plan, {ROGUE_MAC}, has taken {squat_ip}: "
         f"the address the plan gives CT {SQUATTED} {plan[SQUATTED]['name']}")
    env = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "LC_ALL": "C", "PHOENIX_HOOK_CONF": conf,
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    script = os.path.join(env["PYTHONPATH"], "hookscripts", "phoenix-hook.py")
    # The real hookscript file in a checkout; the same entry point when installed.
    hook = [sys.executable, script] if os.path.exists(script) else [sys.executable, "-m", "phoenix_hook.hook"]
    outcomes = {}
    for vmid in (CLEAN, SQUATTED):
        _say(f"\n$ pct start {vmid}    # PVE runs: phoenix-hook.py {vmid} pre-start")
        p = lab.run(lab.pve, hook + [vmid, "pre-start"], env=env, cwd="/", stdin=subprocess.DEVNULL)
        for line in (p.stdout + p.stderr).splitlines():
            _say(f"  {line}")
        outcomes[vmid] = p.returncode
        _say(f"  => exit {p.returncode}: " + ("start goes on" if p.returncode == 0 else
             f"TASK ERROR: hookscript error for {vmid} on pre-start: exit code {p.returncode}"))
    ok = outcomes[CLEAN] == 0 and outcomes[SQUATTED] == 1
    _say("\nDecision log (one JSON line per start):")
    with open(os.path.join(tmp, "decisions.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            _say(f"  CT {r['vmid']}: verdict={r['verdict']} action={r['action']} in {r['elapsed_ms']} ms")
    _say("\n" + ("The squatted container was stopped before it could fight over the address; "
                 "the clean one started." if ok else "Unexpected outcome: see the lines above."))
    return 0 if ok else 1

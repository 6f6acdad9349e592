#!/usr/bin/env python3
"""What the temporary VLAN probe port costs the pre-start hook (net/probeport.py).

    sudo .venv/bin/python bench/bench_vlan_port.py [--runs 15]

A tagged guest (tag=20) on a standard PVE VLAN-aware bridge, whose own VLAN
list lacks 20, is probed through a temporary port; with VLAN 20 on the
bridge itself (`bridge vlan add dev vmbr0 vid 20 self`) no port is needed.
Both run in the VM lab (tests/vmlab/harness.py: Debian's kernel under qemu
TCG, the only kernel here with VLAN filtering), interleaved, address free,
probe_timeout_ms = 200; reported: whole-process wall time and the time
beyond the probe window (total - window, which removes the window's random
length), medians, and the port's own open + close time in-process.
TCG runs everything 20-30 times slower than this machine's own kernel, so
the host estimate times the same process launches here (veth pair, bridge
port, `bridge -batch`, delete) on a bridge of this machine's kernel, which
has no VLAN filtering: the `bridge` step there runs `vlan show` instead.
Results go to stdout and bench/results/vlan_port.md. Skips (exit 0) where
the VM lab is not available.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
HOOK = os.path.join(REPO, "hookscripts", "phoenix-hook.py")
CONF = "hostname: bench951\nnet0: name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24,tag=20,type=veth\n"

OPEN_CLOSE = r"""
import json, sys, time
from phoenix_hook.net import probeport
out = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter()
    p = probeport.open_port("vmbr0", 20)
    t1 = time.perf_counter()
    p.close()
    out.append(((t1 - t) * 1000, (time.perf_counter() - t1) * 1000))
print(json.dumps(out))
"""


def sh(argv, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {p.stderr}")
    return p.stdout


def inner(runs: int) -> int:
    """In the VM: build the lab, time both ways, print JSON."""
    from phoenix_hook.net.lab import Lab, write_tree
    tmp = tempfile.mkdtemp(prefix="phx-bench-")
    write_tree(f"{tmp}/pve", "pve1", {951: CONF})
    with open(f"{tmp}/fast.conf", "w") as f:
        f.write(f"[phoenix-hook]\npve_root = {tmp}/pve\nnode = pve1\nlog_file = {tmp}/log.jsonl\n"
                f"run_dir = {tmp}/run\nprobe_timeout_ms = 200\n")
    env = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "LC_ALL": "C", "PYTHONPATH": REPO,
           "PHOENIX_HOOK_CONF": f"{tmp}/fast.conf"}
    with Lab() as lab:
        pve = lab.pve
        lab.ip(pve, "link", "set", "vmbr0", "type", "bridge", "vlan_filtering", "1")
        lan = lab.add_namespace(f"{lab.prefix}-lan")
        lab.ip(pve, "link", "add", "eno1", "type", "veth", "peer", "name", "eth0", "netns", lan)
        lab.ip(pve, "link", "set", "eno1", "master", "vmbr0")
        lab.ip(pve, "link", "set", "eno1", "up")
        sh(["ip", "netns", "exec", pve, "bridge", "vlan", "add", "dev", "eno1", "vid", "2-4094"])
        lab.ip(lan, "link", "set", "eth0", "up")
        lab.ip(lan, "link", "add", "link", "eth0", "name", "eth0.20", "type", "vlan", "id", "20")
        lab.ip(lan, "addr", "add", "10.0.0.1/24", "dev", "eth0.20")    # someone else in VLAN 20
        lab.ip(lan, "link", "set", "eth0.20", "up")
        lab.wait_link_ready()
        series: dict[str, list[tuple[float, int]]] = {"port": [], "self": []}
        for _ in range(runs):
            for way in ("port", "self"):
                verb = "add" if way == "self" else "del"
                if way == "self" or series["self"]:
                    sh(["ip", "netns", "exec", pve, "bridge", "vlan", verb, "dev", "vmbr0", "vid", "20", "self"])
                t = time.perf_counter()
                p = subprocess.run(["ip", "netns", "exec", pve, sys.executable, HOOK, "951", "pre-start"],
                                   env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
                ms = (time.perf_counter() - t) * 1000
                window = re.findall(r"is free on vmbr0 VLAN 20 \(no answer in (\d+) ms, 3 probes(.*)\)", p.stdout)
                if p.returncode != 0 or not window or (way == "port") != bool(window[0][1]):
                    raise SystemExit(f"{way}: exit {p.returncode}: {p.stdout}{p.stderr}")
                series[way].append((ms, int(window[0][0])))
        sh(["ip", "netns", "exec", pve, "bridge", "vlan", "del", "dev", "vmbr0", "vid", "20", "self"])
        oc = json.loads(sh(["ip", "netns", "exec", pve, sys.executable, "-c", OPEN_CLOSE, str(runs)],
                           env={"PYTHONPATH": REPO, "PATH": env["PATH"]}))
    print(json.dumps({"series": series, "open_close": oc}))
    return 0


def host_estimate(runs: int) -> dict | None:
    """The same process launches on this machine's kernel (no VLAN filtering: `bridge vlan show`)."""
    from phoenix_hook.net.lab import Lab, available
    if available():
        return None
    out = []
    with Lab() as lab:
        ns = ["ip", "netns", "exec", lab.pve]
        for i in range(runs):
            t = time.perf_counter()
            sh([*ns, "ip", "-batch", "-"], input=f"link add vethphx{i} type veth peer name phxq{i}\n"
               f"link set vethphx{i} addrgenmode none\nlink set phxq{i} addrgenmode none\n"
               f"link set vethphx{i} master vmbr0\n")
            sh([*ns, "bridge", "-batch", "-"], input=f"vlan show dev vethphx{i}\n")
            sh([*ns, "ip", "-batch", "-"], input=f"link set vethphx{i} up\nlink set phxq{i} up\n")
            t1 = time.perf_counter()
            sh([*ns, "ip", "link", "del", f"vethphx{i}"])
            out.append(((t1 - t) * 1000, (time.perf_counter() - t1) * 1000))
    return {"open": statistics.median(o for o, _ in out), "close": statistics.median(c for _, c in out)}


def outer(args) -> int:
    from vmlab import harness
    why = harness.unavailable()
    if why:
        print(f"bench_vlan_port: skipped: {why}", file=sys.stderr)
        return 0
    t = time.monotonic()
    r = harness.run([sys.executable, os.path.abspath(__file__), "--inner", "--runs", str(args.runs)],
                    cwd=REPO, timeout=3600)
    if r.rc != 0:
        print(r.output[-4000:] + r.console[-2000:], file=sys.stderr)
        return 1
    data = json.loads(r.output.strip().splitlines()[-1])
    vm_s = time.monotonic() - t
    med = {}
    for way, rows in data["series"].items():
        med[way] = (statistics.median(ms for ms, _w in rows), statistics.median(ms - w for ms, w in rows),
                    statistics.median(w for _ms, w in rows))
    oc_open = statistics.median(o for o, _c in data["open_close"])
    oc_close = statistics.median(c for _o, c in data["open_close"])
    host = host_estimate(args.runs)
    out = [f"Temporary VLAN probe port, {args.runs} interleaved runs each way, medians (ms)",
           f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs; VM lab: Debian {harness.find_kernel().version} "
           f"under qemu TCG, {vm_s:.0f} s in all; command: sudo .venv/bin/python bench/bench_vlan_port.py "
           f"--runs {args.runs})", "",
           "| pre-start, tag=20, free, probe_timeout_ms 200 (in the VM) | whole process | beyond the window | window |",
           "|---|---|---|---|",
           f"| standard VLAN-aware bridge: temporary port | {med['port'][0]:.0f} | {med['port'][1]:.0f} | {med['port'][2]:.0f} |",
           f"| VLAN 20 on the bridge itself: no port | {med['self'][0]:.0f} | {med['self'][1]:.0f} | {med['self'][2]:.0f} |",
           "",
           f"Port cost beyond the window, in the VM: {med['port'][1] - med['self'][1]:.0f} ms "
           f"({med['port'][1] / med['self'][1]:.2f}x); open {oc_open:.0f} ms + close {oc_close:.0f} ms in-process."]
    if host:
        out.append(f"Host estimate (this machine's kernel, the same process launches): open {host['open']:.1f} ms "
                   f"+ close {host['close']:.1f} ms.")
    out.append("raw: " + json.dumps({k: [[round(a), b] for a, b in v] for k, v in data["series"].items()}))
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "vlan_port.md"), "w") as f:
        f.write(text)
    print(text, end="")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    return inner(args.runs) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())

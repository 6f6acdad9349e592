#!/usr/bin/env python3
"""Benchmark of the pre-start hook against iputils `arping -D`, in one run, in a namespace lab.

    sudo .venv/bin/python bench/bench_hook.py [--runs 21]

Whole-process wall times (fork to exit) and CPU times (user + system of the
process, from wait4's rusage) of:
  - Python's bare start-up (`python3 -c pass`, the same interpreter): the CPU yardstick
  - the hook's pre-start on a squatted address vs `arping -D -c 2 -w 2`
  - the hook on a free address, default settings (1000 ms) and probe_timeout_ms = 200,
    vs `arping -D -c 2 -w 2` (its usual call) on the same free address, and like for
    like vs `arping -D -c 3 -w 1`: three probes in a 1 s window, as our default
    (arping's -w and -i take whole seconds, so nothing of arping matches 200 ms)
  - post-stop (no network, no heavy import)
  - a 4-NIC guest vs a 1-NIC guest (all free)
The measuring half runs inside the lab's "PVE host" namespace (re-executed
with `ip netns exec`), so no run pays for namespace entry and nothing ever
touches this machine's own interfaces. Medians and ratios go to stdout and
bench/results/hook.md.

The hook runs as the Debian package runs it: Debian's /usr/bin/python3 (its
own python3-netaddr), the checkout on PYTHONPATH; --python picks another.
A venv's interpreter would also load its site-packages' .pth finders (an
editable install costs every process ~15 ms), which flatters the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
HOOK = os.path.join(REPO, "hookscripts", "phoenix-hook.py")
SQUAT_MAC = "16:0d:a0:c0:b9:1b"      # locally administered: no vendor lookup
VENDOR_MAC = "00:1b:21:3a:4b:5c"     # an Intel OUI: the hook names the vendor


def conf_line(vmid, nics):
    lines = [f"hostname: bench{vmid}"]
    for i, (ip, mac) in enumerate(nics):
        lines.append(f"net{i}: name=eth{i},bridge=vmbr0,gw=10.0.0.1,hwaddr={mac},ip={ip}/24,type=veth")
    return "\n".join(lines) + "\n"


def outer(args) -> int:
    from phoenix_hook.net.lab import Lab, available, write_tree
    why = available()
    if why:
        print(f"bench_hook: {why}", file=sys.stderr)
        return 3
    tmp = tempfile.mkdtemp(prefix="phx-bench-")
    write_tree(f"{tmp}/pve", "pve1", {
        951: conf_line(951, [("10.0.0.151", "52:54:00:67:89:b1")]),                  # squatted
        952: conf_line(952, [("10.0.0.152", "52:54:00:67:89:b2")]),                  # free
        953: conf_line(953, [("10.0.0.153", "52:54:00:67:89:b3")]),                  # squatted, Intel MAC
        960: conf_line(960, [(f"10.0.0.{160 + i}", f"52:54:00:67:89:c{i}") for i in range(4)]),
    })
    for name, timeout in (("default", 1000), ("fast", 200)):
        with open(f"{tmp}/{name}.conf", "w") as f:
            f.write(f"[phoenix-hook]\npve_root = {tmp}/pve\nnode = pve1\nlog_file = {tmp}/log.jsonl\nrun_dir = {tmp}/run\n"
                    f"probe_timeout_ms = {timeout}\n")
    with Lab() as lab:
        lab.add_host("gw", "10.0.0.1/24")
        lab.add_host("squat", "10.0.0.151/24", mac=SQUAT_MAC)
        lab.add_host("squat2", "10.0.0.153/24", mac=VENDOR_MAC)
        lab.wait_link_ready()
        p = lab.run(lab.pve, [sys.executable, os.path.abspath(__file__), "--inner", tmp,
                              "--runs", str(args.runs), "--python", args.python], timeout=3600)
        sys.stderr.write(p.stderr)
        print(p.stdout, end="")
        return p.returncode


def timed(argv, env) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall ms, CPU ms, result): CPU is the child's user + system time (RUSAGE_CHILDREN delta)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
    wall = (time.perf_counter() - t) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu, p


def inner(tmp: str, runs: int, py: str) -> int:
    base = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "LC_ALL": "C", "PYTHONPATH": REPO}
    env = {n: dict(base, PHOENIX_HOOK_CONF=f"{tmp}/{n}.conf") for n in ("default", "fast")}
    series: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    windows: dict[str, list[float]] = {}

    def add(name, ms, cpu=None):
        series.setdefault(name, []).append(ms)
        if cpu is not None:
            cpus.setdefault(name, []).append(cpu)

    def bare():
        ms, cpu, p = timed([py, "-c", "pass"], env["default"])
        if p.returncode != 0:
            raise SystemExit(f"{py} -c pass: exit {p.returncode}: {p.stderr}")
        add("python -c pass", ms, cpu)

    def hook(name, vmid, phase, cfg, expect):
        ms, cpu, p = timed([py, HOOK, str(vmid), phase], env[cfg])
        if p.returncode != expect:
            raise SystemExit(f"{name}: exit {p.returncode}, expected {expect}: {p.stdout}{p.stderr}")
        add(name, ms, cpu)
        win = [int(x) for x in re.findall(r"no answer in (\d+) ms", p.stdout)]
        if win:
            windows.setdefault(name, []).append(max(win))

    def arping(name, ip, expect, count="2", window="2"):
        ms, cpu, p = timed(["arping", "-D", "-c", count, "-w", window, "-I", "vmbr0", ip], base)
        if p.returncode != expect:
            raise SystemExit(f"{name}: arping exit {p.returncode}, expected {expect}: {p.stdout}")
        add(name, ms, cpu)

    for _ in range(runs):        # interleaved, so drift hits every series alike
        bare()
        hook("hook squatted", 951, "pre-start", "default", 1)
        hook("hook squatted, vendor MAC", 953, "pre-start", "default", 1)
        arping("arping squatted", "10.0.0.151", 1)
        hook("hook free (1000 ms)", 952, "pre-start", "default", 0)
        hook("hook free (200 ms)", 952, "pre-start", "fast", 0)
        arping("arping free", "10.0.0.152", 0)
        arping("arping free, 1 s", "10.0.0.152", 0, count="3", window="1")
        hook("hook post-stop", 952, "post-stop", "default", 0)
        hook("hook 1 NIC (200 ms)", 952, "pre-start", "fast", 0)
        hook("hook 4 NICs (200 ms)", 960, "pre-start", "fast", 0)

    med = {k: statistics.median(v) for k, v in series.items()}
    over = {k: statistics.median([t - w for t, w in zip(series[k], windows[k])]) for k in windows}
    rows = [
        ("hook squatted", f"{med['hook squatted']:.0f}", f"{med['hook squatted'] / med['arping squatted']:.2f}x arping",
         "exit <= 150 ms after process start"),
        ("hook squatted, vendor MAC (Intel)", f"{med['hook squatted, vendor MAC']:.0f}",
         f"{med['hook squatted, vendor MAC'] / med['arping squatted']:.2f}x arping", "exit <= 150 ms"),
        ("arping -D -c 2 -w 2 squatted", f"{med['arping squatted']:.0f}", "", ""),
        ("hook free, default 1000 ms (matched: 3 probes, 1 s)", f"{med['hook free (1000 ms)']:.0f}",
         f"{med['hook free (1000 ms)'] / med['arping free, 1 s']:.2f}x arping -c 3 -w 1; "
         f"window + {over['hook free (1000 ms)']:.0f} ms", "<= window + 150 ms"),
        ("arping -D -c 3 -w 1 free (matched)", f"{med['arping free, 1 s']:.0f}", "", ""),
        ("hook free, probe_timeout_ms 200 (NOT matched: arping cannot wait < 1 s)",
         f"{med['hook free (200 ms)']:.0f}",
         f"{med['hook free (200 ms)'] / med['arping free']:.2f}x arping -c 2 -w 2", "<= 350 ms"),
        ("arping -D -c 2 -w 2 free (its usual call, 2 s)", f"{med['arping free']:.0f}", "", ""),
        ("hook post-stop", f"{med['hook post-stop']:.0f}", "", "< 80 ms"),
        ("hook 4 NICs / 1 NIC (200 ms)", f"{med['hook 4 NICs (200 ms)']:.0f} / {med['hook 1 NIC (200 ms)']:.0f}",
         f"ratio {med['hook 4 NICs (200 ms)'] / med['hook 1 NIC (200 ms)']:.2f}", "ratio <= 1.2"),
    ]
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    bare_cpu = cpu["python -c pass"]

    def cpu_row(label, key, goal=""):
        return (label, f"{cpu[key]:.1f}", f"{cpu[key] / bare_cpu:.2f}x", goal)
    cpu_rows = [
        cpu_row("python3 -c pass (bare start-up)", "python -c pass"),
        cpu_row("hook pre-start, squatted", "hook squatted", "<= 4x"),
        cpu_row("hook pre-start, squatted, vendor MAC", "hook squatted, vendor MAC", "<= 4x"),
        cpu_row("hook pre-start, free, 1000 ms", "hook free (1000 ms)", "<= 4x"),
        cpu_row("hook pre-start, free, 200 ms", "hook free (200 ms)", "<= 4x"),
        cpu_row("hook pre-start, 4 NICs (200 ms)", "hook 4 NICs (200 ms)", ""),
        cpu_row("hook post-stop", "hook post-stop", ""),
        cpu_row("arping -D -c 2 -w 2 squatted", "arping squatted", ""),
    ]
    version = subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True).stdout.strip()
    out = [f"Hook benchmark, {runs} interleaved runs each, medians of whole-process wall time (ms)",
           f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, namespace lab, hook under {py} "
           f"(Python {version}); command: sudo .venv/bin/python bench/bench_hook.py --runs {runs})", "",
           "| case | median ms | vs peer | goal |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    out += ["", "CPU (user + system) of the same runs, medians, against Python's bare start-up:", "",
            "| case | median CPU ms | vs python3 -c pass | goal |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in cpu_rows]
    out += ["", f"free (1000 ms): window median {statistics.median(windows['hook free (1000 ms)']):.0f} ms, "
            f"max total {max(series['hook free (1000 ms)']):.0f} ms; "
            f"squatted max {max(series['hook squatted']):.0f} ms",
            "raw wall: " + json.dumps({k: [round(x) for x in v] for k, v in series.items()}),
            "raw CPU: " + json.dumps({k: [round(x) for x in v] for k, v in cpus.items()})]
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "hook.md"), "w") as f:
        f.write(text)
    print(text, end="")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--python", default="/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK)
                    else sys.executable, help="interpreter the hook runs under (default: Debian's /usr/bin/python3)")
    ap.add_argument("--inner", metavar="TMP", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        return inner(args.inner, args.runs, args.python)
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark of `phoenix-hook watch` against arpwatch, on the same bridge, in one run.

    sudo .venv/bin/python bench/bench_watch.py [--seconds 20] [--rate 5000] [--runs 10]

In a namespace lab (a PVE host with vmbr0 and 20 guest configs; LAN
namespaces that send), the watch and arpwatch (Debian's `arpwatch -d`, which
reports to stderr) listen on vmbr0 side by side:
  - CPU: both processes' user+system time while a LAN host sends RATE
    unrelated ARP requests a second (100 stations asking for each other, none
    a guest) for SECONDS, against an idle window of the same length;
  - latency: from a squatter's first frame (a gratuitous ARP for a guest's
    address from a new MAC; arpwatch has learned the guest's MAC first) to
    the watch's journal line and to arpwatch's "changed ethernet address"
    report, RUNS times, medians;
  - memory: VmRSS of both before, at the peak of, and 5 s after 10,000
    spoofed gratuitous ARPs for one guest address, each from a new MAC, and
    after 10,000 more; the alerts each wrote;
  - the hookscript's post-start (announcing, detached) against post-stop:
    fork to EOF on its output, 21 interleaved runs, inside the lab's PVE
    namespace; and the watch's exit after SIGTERM.
Nothing leaves the lab's namespaces. Medians and ratios go to stdout and
bench/results/watch.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SENDER = os.path.join(REPO, "tests", "sender.py")
HOOK = os.path.join(REPO, "hookscripts", "phoenix-hook.py")
GUESTS = 20
CLK = os.sysconf("SC_CLK_TCK")


def guest_ip(i):
    return f"10.0.0.{150 + i}"


def guest_mac(i):
    return f"52:54:00:be:00:{i:02x}"


class Proc:
    """A long-running process whose output lines are timestamped (CLOCK_MONOTONIC) as they arrive."""

    def __init__(self, argv, env=None, stream="stdout"):
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT if stream == "stdout"
                                  else subprocess.PIPE)
        self.lines: list[tuple[float, str]] = []
        pipe = self.p.stdout if stream == "stdout" else self.p.stderr
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()
        if stream != "stdout":
            threading.Thread(target=self._read, args=(self.p.stdout,), daemon=True).start()

    def _read(self, pipe):
        for line in pipe:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_line(self, pred, timeout=15.0, after=0.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, line in list(self.lines):
                if t >= after and pred(line):
                    return t, line
            time.sleep(0.002)
        return None

    def cpu_s(self) -> float:
        """Time on a CPU so far, in ns resolution (/proc/PID/schedstat, first field), not ticks."""
        with open(f"/proc/{self.p.pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    def rss_kib(self) -> int:
        with open(f"/proc/{self.p.pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--hook-runs", type=int, default=21)
    args = ap.parse_args()
    from phoenix_hook.net.lab import Lab, available, write_tree
    why = available()
    arpwatch = shutil.which("arpwatch") or ("/usr/sbin/arpwatch" if os.path.exists("/usr/sbin/arpwatch") else None)
    if why or not arpwatch:
        print(f"bench_watch: {why or 'arpwatch not installed (apt install arpwatch)'}", file=sys.stderr)
        return 3
    tmp = tempfile.mkdtemp(prefix="phx-bench-watch-")
    write_tree(f"{tmp}/pve", "pve1", {
        900 + i: (f"hostname: bench{i}\nnet0: name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr={guest_mac(i)},"
                  f"ip={guest_ip(i)}/24,type=veth\n") for i in range(GUESTS)})
    conf = f"{tmp}/phoenix-hook.conf"
    with open(conf, "w") as f:
        f.write(f"[phoenix-hook]\npve_root = {tmp}/pve\nnode = pve1\nlog_file = {tmp}/decisions.jsonl\n"
                f"run_dir = {tmp}/run\n[watch]\nlog_file = {tmp}/watch.jsonl\nnotify = off\n"
                f"max_alerts_per_minute = 100\nverify_s = 3600\nmetrics_file = {tmp}/watch.prom\n")
    env = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "LC_ALL": "C", "PHOENIX_HOOK_CONF": conf, "PYTHONPATH": REPO}
    res: dict = {}
    with Lab() as lab:
        lab.add_host_address("10.0.0.2/24")          # arpwatch takes its local net from the interface
        lan = lab.add_host("lan")
        squat = lab.add_host("squat")
        lab.wait_link_ready()
        dat = f"{tmp}/arp.dat"
        open(dat, "w").close()
        watch = Proc(["ip", "netns", "exec", lab.pve, sys.executable, "-m", "phoenix_hook", "watch"], env=env)
        # -d: stay in the foreground and print reports instead of mailing them; stdbuf: line by
        # line (a pipe would otherwise hold its stdio output back in 4 KiB blocks)
        aw = Proc(["ip", "netns", "exec", lab.pve, "stdbuf", "-oL", "-eL", arpwatch, "-d", "-N", "-i", "vmbr0",
                   "-f", dat], env=env,
                  stream="stderr")
        try:
            assert watch.wait_line(lambda x: x.startswith("<6>watching")), watch.lines
            time.sleep(1.0)
            assert aw.p.poll() is None, aw.lines

            def run_in(ns, argv, timeout=600):
                p = lab.run(ns, [sys.executable, SENDER, "--iface", "eth0", *argv], env=env, timeout=timeout)
                assert p.returncode == 0, p.stderr
                return p.stdout

            # arpwatch learns each guest's MAC (for the watch: the guest itself, no event)
            from phoenix_hook.net import arp
            run_in(squat, sum((["--hex", arp.build_announcement(guest_mac(i), guest_ip(i)).hex()]
                               for i in range(GUESTS)), []))
            aw.wait_line(lambda x: guest_ip(GUESTS - 1) in x, timeout=10)

            # -- CPU on unrelated ARP ------------------------------------------------------
            unrelated = ["--unrelated", str(args.rate), "--hosts", "100", "--base", "10.0.0.10"]
            run_in(lan, unrelated + ["--seconds", "3"])             # arpwatch learns the 100 stations
            time.sleep(1.0)
            c0 = (watch.cpu_s(), aw.cpu_s())
            t0 = time.monotonic()
            time.sleep(args.seconds)
            idle = [(b - a) / (time.monotonic() - t0) for a, b in zip(c0, (watch.cpu_s(), aw.cpu_s()))]
            frames0 = metrics(tmp).get('phoenix_hook_frames_total{family="ipv4"}', 0)
            c0 = (watch.cpu_s(), aw.cpu_s())
            t0 = time.monotonic()
            out = run_in(lan, unrelated + ["--seconds", str(args.seconds)])
            wall = time.monotonic() - t0
            busy = [(b - a) / wall for a, b in zip(c0, (watch.cpu_s(), aw.cpu_s()))]
            sent = int(out.split("sent ")[1].split()[0])
            time.sleep(1.5)
            frames1 = metrics(tmp).get('phoenix_hook_frames_total{family="ipv4"}', 0)
            res["cpu"] = {"watch": busy[0], "arpwatch": busy[1], "watch idle": idle[0], "arpwatch idle": idle[1],
                          "rate": sent / wall, "seconds": wall, "frames judged by the watch": frames1 - frames0}

            # -- first frame to event --------------------------------------------------------
            lat_w, lat_a = [], []
            sp = subprocess.Popen(["ip", "netns", "exec", squat, sys.executable, SENDER, "--iface", "eth0",
                                   "--stdin"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            lab.procs.append(sp)
            assert sp.stdout.readline().strip() == "ready"
            for i in range(args.runs):
                mac = f"16:0d:a0:c0:b9:{i:02x}"
                ip = guest_ip(i)
                sp.stdin.write(arp.build_announcement(mac, ip).hex() + "\n")
                sp.stdin.flush()
                t_sent = float(sp.stdout.readline().split()[1])
                hit = watch.wait_line(lambda x: x.startswith("<3>conflict") and mac in x, after=t_sent - 1)
                # arpwatch's report is a mail: its Subject line names the address
                hit_a = aw.wait_line(lambda x: x.startswith("Subject: changed ethernet address (" + ip + ")"),
                                     timeout=5, after=t_sent - 1)
                lat_w.append((hit[0] - t_sent) * 1000 if hit else float("nan"))
                lat_a.append((hit_a[0] - t_sent) * 1000 if hit_a else float("nan"))
                time.sleep(0.3)
            sp.stdin.close()
            sp.wait(5)
            res["latency_ms"] = {"watch": lat_w, "arpwatch": lat_a}

            # -- a 10,000-frame spoofed flood ---------------------------------------------
            before = (watch.rss_kib(), aw.rss_kib())
            conflicts_before = sum(x.startswith("<3>conflict") for _, x in watch.lines)
            aw_before = len(aw.lines)
            peak = list(before)
            done = threading.Event()

            def sample():
                while not done.is_set():
                    for k, proc in enumerate((watch, aw)):
                        try:
                            peak[k] = max(peak[k], proc.rss_kib())
                        except (OSError, StopIteration):
                            pass
                    time.sleep(0.02)
            th = threading.Thread(target=sample, daemon=True)
            th.start()
            t0 = time.monotonic()
            run_in(lan, ["--spoof", guest_ip(GUESTS - 1), "--count", "10000", "--seed", "7"])
            flood_s = time.monotonic() - t0
            time.sleep(2.0)
            done.set()
            th.join()
            time.sleep(5.0)
            after = (watch.rss_kib(), aw.rss_kib())
            m = metrics(tmp)
            # a second flood of other spoofed MACs: bounded memory does not grow again
            run_in(lan, ["--spoof", guest_ip(GUESTS - 1), "--count", "10000", "--seed", "8"])
            time.sleep(5.0)
            second = (watch.rss_kib(), aw.rss_kib())
            res["flood"] = {"rss_kib": {"watch": [before[0], peak[0], after[0], second[0]],
                                        "arpwatch": [before[1], peak[1], after[1], second[1]]},
                            "seconds": flood_s,
                            "watch alerts": sum(x.startswith("<3>conflict") for _, x in watch.lines) - conflicts_before,
                            "arpwatch report lines": len(aw.lines) - aw_before,
                            "arpwatch reports": sum(x.startswith("Subject:") for _, x in aw.lines[aw_before:]),
                            "watch judged": m.get(f'phoenix_hook_conflicts_total{{id="lxc/{900 + GUESTS - 1}",'
                                                  f'ip="{guest_ip(GUESTS - 1)}"}}', 0),
                            "kernel drops": m.get("phoenix_hook_frames_dropped_total", 0)}

            # -- SIGTERM -------------------------------------------------------------------
            t0 = time.monotonic()
            watch.p.send_signal(signal.SIGTERM)
            code = watch.p.wait(10)
            res["sigterm"] = {"exit": code, "ms": (time.monotonic() - t0) * 1000}
            time.sleep(0.2)
            res["flood"]["summary lines"] = [x for _, x in watch.lines if x.startswith("<4>suppressed:")]
        finally:
            watch.stop()
            aw.stop()

        # -- post-start (announcing, detached) vs post-stop, inside the PVE namespace ----------
        code = f"""
import json, subprocess, sys, time
env = {json.dumps(env)}
out = {{"post-start": [], "post-stop": []}}
for i in range({args.hook_runs}):
    for phase in ("post-start", "post-stop"):
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, {HOOK!r}, "900", phase], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        p.stdout.read()                          # to EOF, as PVE reads it
        p.wait()
        out[phase].append((time.perf_counter() - t) * 1000)
print(json.dumps(out))
"""
        p = lab.run(lab.pve, [sys.executable, "-c", code], env=env, timeout=600)
        assert p.returncode == 0, p.stderr
        res["hook_ms"] = json.loads(p.stdout)
    shutil.rmtree(tmp, ignore_errors=True)
    report(res, args)
    return 0


def metrics(tmp) -> dict:
    out = {}
    try:
        with open(f"{tmp}/watch.prom") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    name, value = line.rsplit(" ", 1)
                    out[name] = float(value)
    except OSError:
        pass
    return out


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def report(res, args) -> None:
    cpu, lat, fl, hook = res["cpu"], res["latency_ms"], res["flood"], res["hook_ms"]
    rw, ra = fl["rss_kib"]["watch"], fl["rss_kib"]["arpwatch"]
    ratio = cpu["watch"] / cpu["arpwatch"] if cpu["arpwatch"] else float("inf")
    lines = [
        f"Watch benchmark: `phoenix-hook watch` and arpwatch on the same bridge, one run",
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, namespace lab; command: "
        f"sudo .venv/bin/python bench/bench_watch.py --seconds {args.seconds:g} --rate {args.rate} --runs {args.runs})",
        "",
        "| measure | phoenix-hook watch | arpwatch | goal |",
        "|---|---|---|---|",
        f"| CPU, {cpu['rate']:.0f} unrelated ARP frames/s for {cpu['seconds']:.0f} s | {cpu['watch'] * 100:.2f} % "
        f"(idle {cpu['watch idle'] * 100:.2f} %) | {cpu['arpwatch'] * 100:.2f} % (idle {cpu['arpwatch idle'] * 100:.2f} %) "
        f"| watch <= arpwatch (ratio {ratio:.2f}) |",
        f"| frames that reached user space in that time | {cpu['frames judged by the watch']:.0f} | all "
        f"{cpu['rate'] * cpu['seconds']:.0f} (pcap filter 'arp') | |",
        f"| squatter's first frame to the event, median of {len(lat['watch'])} | {med(lat['watch']):.1f} ms "
        f"(max {max(lat['watch']):.1f}) | {med(lat['arpwatch']):.1f} ms (max {max(lat['arpwatch']):.1f}) | < 1000 ms |",
        f"| RSS before / peak / 5 s after 10,000 spoofed frames / after 10,000 more | {rw[0] / 1024:.1f} / "
        f"{rw[1] / 1024:.1f} / {rw[2] / 1024:.1f} / {rw[3] / 1024:.1f} MiB | {ra[0] / 1024:.1f} / {ra[1] / 1024:.1f} / "
        f"{ra[2] / 1024:.1f} / {ra[3] / 1024:.1f} MiB | bounded |",
        f"| alerts written for both floods (20,000 frames) | {fl['watch alerts']} journal lines + "
        f"{len(fl['summary lines'])} summary line{'s' if len(fl['summary lines']) != 1 else ''} "
        f"(max_alerts_per_minute = 100 here, {len(lat['watch'])} used by the latency runs) | "
        f"{fl['arpwatch report lines']} report lines ({fl['arpwatch reports']} mails) | "
        f"<= max_alerts_per_minute |",
        f"| SIGTERM to exit | {res['sigterm']['ms']:.0f} ms, exit {res['sigterm']['exit']} | | < 1000 ms, 0 |",
        f"| hookscript post-start (announcing, detached) / post-stop, to EOF, median of {len(hook['post-start'])} "
        f"| {med(hook['post-start']):.0f} / {med(hook['post-stop']):.0f} ms | | post-start <= 150 ms |",
        "",
        f"first flood: sent in {fl['seconds']:.2f} s; the watch judged {fl['watch judged']:.0f} of them, the kernel dropped "
        f"{fl['kernel drops']:.0f} before it read them (counted in phoenix_hook_frames_dropped_total)",
        "summary: " + " / ".join(fl["summary lines"]),
        "raw: " + json.dumps({"latency_ms": {k: [round(x, 1) for x in v] for k, v in lat.items()},
                              "hook_ms": {k: [round(x) for x in v] for k, v in hook.items()},
                              "cpu": {k: round(v, 4) for k, v in cpu.items()}}),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "watch.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())

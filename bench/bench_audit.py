#!/usr/bin/env python3
"""Benchmark of `phoenix-hook audit`: a 2000-guest files tree, and the API on loopback.

    .venv/bin/python bench/bench_audit.py [--runs 7] [--api-guests 1000] [--latency-ms 10]

1. files: a synthetic /etc/pve tree of 2000 guests (3 nodes, 1600 CTs and 400
   VMs, realistic configs with snapshots and pending sections). Whole-process
   wall time of `phoenix-hook audit` (fork to exit). Goal: < 0.5 s.
2. api: a local HTTPS server on 127.0.0.1 (self-signed certificate made here
   with openssl; the client verifies it, verify_ssl = <that cert>) that speaks
   the Proxmox API's shapes ({"data": ...}; /cluster/resources?type=vm,
   /cluster/status, /nodes/{node}/{lxc|qemu}/{vmid}/config), checks the token
   header and waits latency-ms on every request. 1000 guests: whole-process
   `phoenix-hook audit --source api` (concurrent fetches), and in-process
   ApiSource.guests() with 16 workers vs 1 (the sequential figure).
   Goal: < 3 s for 1000 guests.
Nothing leaves 127.0.0.1. Results: stdout and bench/results/audit.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
TOKEN = "1b7c3f0e-2a4d-4e5f-8a9b-0c1d2e3f4a5b"
NODES = ("pve1", "pve2", "pve3")


# -- the synthetic cluster ------------------------------------------------------

def guest_configs(n: int) -> dict:
    """{(node, kind, vmid): config dict} with realistic values; a few findings on purpose."""
    out = {}
    for i in range(n):
        vmid = 100 + i
        node = NODES[i % 3]
        b, c = divmod(i, 250)
        ip = f"10.{20 + b}.{c // 250}.{c % 250 + 2}"
        mac = f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        if i % 5 == 4:
            cfg = {"name": f"vm{vmid}", "cores": 4, "memory": "8192", "ostype": "l26", "boot": "order=scsi0;net0",
                   "scsi0": f"local-lvm:vm-{vmid}-disk-0,size=64G", "scsihw": "virtio-scsi-single",
                   "net0": f"virtio={mac},bridge=vmbr0,firewall=1,tag={20 + b}",
                   "ipconfig0": f"ip={ip}/24,gw=10.{20 + b}.0.1",
                   "net1": f"virtio=BC:24:11:{(i >> 8) & 255:02x}:{i & 255:02x}:01,bridge=vmbr1",
                   "ipconfig1": "ip=dhcp", "smbios1": "uuid=6c8e0d3a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
                   "vmgenid": "1f2e3d4c-0000-4000-8000-000000000000", "digest": "0" * 40}
            kind = "qemu"
        else:
            cfg = {"arch": "amd64", "hostname": f"ct{vmid}", "cores": 2, "memory": 2048, "swap": 512,
                   "ostype": "debian", "rootfs": f"local-lvm:vm-{vmid}-disk-0,size=8G", "unprivileged": 1,
                   "features": "nesting=1",
                   "net0": f"name=eth0,bridge=vmbr0,firewall=1,gw=10.{20 + b}.0.1,hwaddr={mac},ip={ip}/24,"
                           f"tag={20 + b},type=veth",
                   "description": f"bench guest {vmid}\nowner: team-{i % 7}\n", "digest": "0" * 40}
            kind = "lxc"
        out[(node, kind, vmid)] = cfg
    # a handful of real findings: a clone that kept IP and MAC, one in a DHCP pool
    k0, k1 = list(out)[0], list(out)[5]
    out[k1] = dict(out[k1], net0=out[k0]["net0"])
    return out


def to_text(cfg: dict, with_history: bool) -> str:
    lines = [f"#{line}" for line in str(cfg.get("description", "")).splitlines()]
    lines += [f"{k}: {v}" for k, v in cfg.items() if k not in ("description", "digest")]
    text = "\n".join(lines) + "\n"
    if with_history:                                   # snapshots and pending sections, as in real trees
        snap = [f"{k}: {v}" for k, v in cfg.items() if k.startswith(("net", "ipconfig", "memory"))]
        text += "\n[before-upgrade]\n" + "\n".join(snap) + "\nsnaptime: 1726000000\n"
    return text


def write_tree(root: str, configs: dict) -> None:
    for (node, kind, vmid), cfg in configs.items():
        d = os.path.join(root, "nodes", node, "lxc" if kind == "lxc" else "qemu-server")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{vmid}.conf"), "w") as f:
            f.write(to_text(cfg, vmid % 3 == 0))
    with open(os.path.join(root, ".members"), "w") as f:
        json.dump({"nodename": "pve1", "version": 7, "cluster": {"name": "bench", "version": 3, "nodes": 3},
                   "nodelist": {n: {"id": i + 1, "online": 1, "ip": f"10.19.0.{i + 2}"}
                                for i, n in enumerate(NODES)}}, f)


# -- the API server (a separate process: it must not share the client's GIL) --------

def serve(args) -> int:
    import http.server
    import socket
    import ssl
    configs = {f"/api2/json/nodes/{n}/{'lxc' if k == 'lxc' else 'qemu'}/{v}/config": c
               for (n, k, v), c in guest_configs(args.api_guests).items()}
    resources = [{"id": f"{k}/{v}", "type": k, "vmid": v, "node": n, "name": c.get("hostname", c.get("name")),
                  "status": "running", "template": 0, "maxmem": 2147483648}
                 for (n, k, v), c in guest_configs(args.api_guests).items()]
    status = [{"type": "cluster", "id": "cluster", "name": "bench", "nodes": 3, "quorate": 1}] + [
        {"type": "node", "id": f"node/{n}", "name": n, "ip": f"10.19.0.{i + 2}", "online": 1}
        for i, n in enumerate(NODES)]
    auth = f"PVEAPIToken=bench@pve!audit={TOKEN}"
    latency = args.latency_ms / 1000.0

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"                  # keep-alive, as pveproxy

        def log_message(self, *a):
            pass

        def do_GET(self):
            time.sleep(latency)
            path, _, query = self.path.partition("?")
            if self.headers.get("Authorization") != auth:
                return self.answer(401, None, "authentication failure")
            if path == "/api2/json/cluster/resources" and query == "type=vm":
                return self.answer(200, resources)
            if path == "/api2/json/cluster/status":
                return self.answer(200, status)
            if path in configs and query in ("", "current=1"):
                return self.answer(200, configs[path])
            return self.answer(404, None, "no such path")

        def setup(self):
            super().setup()
            # No Nagle: with it, a response sent as headers + body waits for the
            # client's delayed ACK (40 ms), which measures the kernel, not us.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def answer(self, code, data, reason=None):
            body = json.dumps({"data": data}).encode()
            self.send_response(code, reason)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self._headers_buffer.append(b"\r\n" + body)      # headers and body in one write
            self.flush_headers()

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    srv = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"port {srv.server_address[1]}", flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    # Stop by itself: when the parent closes our stdin, or after 10 minutes at most.
    end = time.monotonic() + 600
    while time.monotonic() < end and sys.stdin.readline():
        pass
    srv.shutdown()
    return 0


# -- measuring ---------------------------------------------------------------------

def phoenix_cmd() -> list[str]:
    exe = os.path.join(REPO, ".venv", "bin", "phoenix-hook")
    return [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "phoenix_hook"]


def timed(argv, env, expect=(0, 1)) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True, cwd="/")
    dt = time.perf_counter() - t0
    if p.returncode not in expect:
        raise SystemExit(f"bench_audit: {' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return dt, p.stdout


def make_cert(tmp) -> tuple[str, str]:
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--guests", type=int, default=2000)
    ap.add_argument("--api-guests", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=10.0)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/audit.md")
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args)
    if not shutil.which("openssl"):
        print("bench_audit: needs openssl for the loopback HTTPS server", file=sys.stderr)
        return 3

    tmp = tempfile.mkdtemp(prefix="phx-bench-audit-")
    server = None
    try:
        cmd = phoenix_cmd()
        # 1. files
        root = os.path.join(tmp, "pve")
        write_tree(root, guest_configs(args.guests))
        conf = os.path.join(tmp, "files.conf")
        with open(conf, "w") as f:
            f.write(f"[phoenix-hook]\npve_root = {root}\nnode = pve1\ndhcp_ranges = 10.20.0.200-10.20.0.249\n")
        env = dict(os.environ, PHOENIX_HOOK_CONF=conf, PYTHONPATH=REPO)
        timed(cmd + ["audit"], env)                                   # warm the page cache
        files = [timed(cmd + ["audit"], env)[0] for _ in range(args.runs)]
        _, out = timed(cmd + ["audit", "--json"], env)
        doc = json.loads(out)
        files_summary = f"{doc['guests']} guests, {doc['nics']} NICs, {len(doc['findings'])} findings"

        # 2. api
        cert, key = make_cert(tmp)
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "--cert", cert,
                                   "--key", key, "--api-guests", str(args.api_guests),
                                   "--latency-ms", str(args.latency_ms)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = int(re.match(r"port (\d+)", server.stdout.readline()).group(1))
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token, 0o600)
        aconf = os.path.join(tmp, "api.conf")
        with open(aconf, "w") as f:
            f.write(f"[phoenix-hook]\npve_root = {tmp}/no-pve\nnode = pve1\n\n[api]\nhost = 127.0.0.1\n"
                    f"port = {port}\nuser = bench@pve\ntoken_name = audit\ntoken_file = {token}\n"
                    f"verify_ssl = {cert}\ntimeout = 10\n")
        aenv = dict(os.environ, PHOENIX_HOOK_CONF=aconf, PYTHONPATH=REPO)
        api_proc = [timed(cmd + ["audit", "--source", "api"], aenv)[0] for _ in range(max(3, args.runs // 2))]
        _, out = timed(cmd + ["audit", "--source", "api", "--json"], aenv)
        api_doc = json.loads(out)

        from phoenix_hook.pve import api as pveapi
        from phoenix_hook.settings import load
        api = load(aconf).api

        def fetch(workers):
            t0 = time.perf_counter()
            n = len(pveapi.ApiSource(api, workers=workers).guests())
            assert n == args.api_guests, n
            return time.perf_counter() - t0
        par = {w: fetch(w) for w in (4, 8, 16, 32)}
        seq = fetch(1)
    finally:
        if server is not None:
            server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    ms = lambda s: f"{s * 1000:.0f}"  # noqa: E731
    rows = [
        ("files: audit, 2000 guests, whole process", ms(med(files)), f"min {ms(min(files))}, max {ms(max(files))}",
         "< 500 ms", "met" if med(files) < 0.5 else "MISSED"),
        (f"api: audit --source api, {args.api_guests} guests, whole process", ms(med(api_proc)),
         f"min {ms(min(api_proc))}, max {ms(max(api_proc))}", "< 3000 ms", "met" if med(api_proc) < 3 else "MISSED"),
    ] + [(f"api: ApiSource.guests(), {w} workers, in process", ms(t), f"{seq / t:.1f}x sequential", "", "")
         for w, t in par.items()] + [
        ("api: ApiSource.guests(), 1 worker (sequential)", ms(seq), "", "", "")]
    head = (f"audit benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs; command: "
            f".venv/bin/python bench/bench_audit.py --runs {args.runs})\n"
            f"files tree: {files_summary}; API: {args.api_guests} guests behind a loopback HTTPS server "
            f"with {args.latency_ms:g} ms latency per request, TLS verified against its own cert, "
            f"keep-alive; audit found {len(api_doc['findings'])} findings there\n")
    table = "| case | median ms | spread / ratio | goal | |\n|---|---|---|---|---|\n" + \
        "\n".join(f"| {' | '.join(r)} |" for r in rows) + "\n"
    raw = json.dumps({"files": [round(x * 1000) for x in files], "api_process": [round(x * 1000) for x in api_proc],
                      "api_workers": {str(w): round(t * 1000) for w, t in par.items()}, "api_sequential": round(seq * 1000)})
    text = head + "\n" + table + f"\nraw ms: {raw}\n"
    print(text)
    if not args.no_write:
        with open(os.path.join(REPO, "bench", "results", "audit.md"), "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

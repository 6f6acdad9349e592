"""pveapi.py: guest configs through the Proxmox VE API, with `responses` (no real HTTP).

Payloads are in the real API's shapes (REFERENCE section 5): every answer
wrapped in {"data": ...}, /cluster/resources?type=vm rows, the flat config
objects of /nodes/{node}/lxc/{vmid}/config and .../qemu/{vmid}/config.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import threading

import pytest
import requests
import responses
from responses import matchers

from phoenix_hook.cli import main as cli
from phoenix_hook.pve import files as pve, api as pveapi, sources
from phoenix_hook.settings import Settings, parse

BASE = "https://pve1.example.invalid:8006/api2/json"
SECRET = "5f1ae3c2-8d3b-4c1e-9a51-0f5e0d9a7b11"

RESOURCES = [
    {"id": "lxc/951", "type": "lxc", "vmid": 951, "node": "pve1", "name": "embed-api",
     "status": "running", "template": 0, "tags": "vllm", "maxmem": 75497472000, "uptime": 3600},
    {"id": "lxc/952", "type": "lxc", "vmid": 952, "node": "pve2", "name": "vector-db",
     "status": "stopped", "template": 0},
    {"id": "qemu/120", "type": "qemu", "vmid": 120, "node": "pve2", "name": "vm120",
     "status": "running", "template": 0},
]
CONFIGS = {
    ("pve1", "lxc", 951): {
        "arch": "amd64", "hostname": "embed-api", "memory": 72000, "swap": 512,
        "net0": "name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,hwaddr=52:54:00:67:89:B1,"
                "ip=10.0.0.151/24,type=veth",
        "net1": "name=eth1,bridge=vmbr1,hwaddr=BC:24:11:5E:2A:01,ip=192.168.50.151/24,tag=20,type=veth",
        "ostype": "ubuntu", "rootfs": "local-lvm:vm-951-disk-0,size=128G", "unprivileged": 1,
        "description": "vLLM embedding server\nsecond line: net9: name=x,ip=10.9.9.9/24\n",
        "lxc": [["lxc.cgroup2.devices.allow", "c 195:* rwm"]],
        "digest": "4f7c1b3e8a9d0c2b5e6f7a8b9c0d1e2f3a4b5c6d",
        "hookscript": "cephfs:snippets/phoenix-hook.py",
    },
    ("pve2", "lxc", 952): {
        "hostname": "vector-db",
        "net0": "name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=52:54:00:67:89:B2,ip=10.0.0.152/24,type=veth",
        "digest": "0d1e2f3a4b5c6d4f7c1b3e8a9d0c2b5e6f7a8b9c",
        "hookscript": "cephfs:snippets/phoenix-hook.py",
    },
    ("pve2", "qemu", 120): {
        "name": "vm120", "cores": 2, "memory": "4096", "boot": "order=scsi0;net0",
        "net0": "virtio=A2:C0:43:67:08:A1,bridge=vmbr0,firewall=1,tag=30",
        "ipconfig0": "ip=10.0.30.5/24,gw=10.0.30.1",
        "smbios1": "uuid=6c8e0d3a-1b2c-4d5e-8f90-a1b2c3d4e5f6", "vmgenid": "1f2e3d4c-0000-4000-8000-000000000000",
        "digest": "aa",
        "hookscript": "cephfs:snippets/phoenix-hook.py",
    },
}
STATUS = [{"type": "cluster", "id": "cluster", "name": "phoenix", "nodes": 2, "quorate": 1, "version": 4},
          {"type": "node", "id": "node/pve1", "name": "pve1", "ip": "10.0.0.2", "online": 1, "local": 1, "nodeid": 1},
          {"type": "node", "id": "node/pve2", "name": "pve2", "ip": "10.0.0.3", "online": 1, "local": 0, "nodeid": 2}]


def token_file(tmp_path, mode=0o600, text=SECRET + "\n"):
    p = tmp_path / "token"
    p.write_text(text)
    p.chmod(mode)
    return str(p)


def api_settings(tmp_path, **over):
    api = {"host": "pve1.example.invalid", "port": 8006, "user": "phoenix@pve", "token_name": "audit",
           "token_file": token_file(tmp_path), "verify_ssl": True, "timeout": 2.0}
    api.update(over)
    return api


def conf_file(tmp_path, extra="", api_lines=None):
    tok = token_file(tmp_path)
    api_lines = api_lines if api_lines is not None else (
        "host = pve1.example.invalid\nuser = phoenix@pve\ntoken_name = audit\n"
        f"token_file = {tok}\ntimeout = 2\n")
    p = tmp_path / "phoenix-hook.conf"
    p.write_text(f"[phoenix-hook]\npve_root = {tmp_path}/no-such-pve\nnode = pve1\n"
                 f"log_file = {tmp_path}/log.jsonl\n{extra}\n[api]\n{api_lines}")
    return str(p)


# GET nodes/{node}/storage/{storage}/content?content=snippets as PVE answers it
# (pve-storage API2/Storage/Content.pm: volid, format, content, size, ctime).
SNIPPETS = {("pve1", "cephfs"): ["cephfs:snippets/phoenix-hook.py"],
            ("pve2", "cephfs"): ["cephfs:snippets/phoenix-hook.py"]}


def serve(rsps, resources=RESOURCES, configs=CONFIGS, status=STATUS, seen=None, snippets=None):
    rsps.add(responses.GET, f"{BASE}/cluster/resources", json={"data": resources},
             match=[matchers.query_param_matcher({"type": "vm"})])
    rsps.add(responses.GET, f"{BASE}/cluster/status", json={"data": status})
    rsps.add(responses.GET, f"{BASE}/nodes", json={"data": [
        {"node": "pve1", "status": "online", "type": "node", "id": "node/pve1"},
        {"node": "pve2", "status": "online", "type": "node", "id": "node/pve2"}]})
    for (node, storage), vols in (SNIPPETS if snippets is None else snippets).items():
        rsps.add(responses.GET, f"{BASE}/nodes/{node}/storage/{storage}/content",
                 json={"data": [{"volid": v, "format": "snippet", "content": "snippets", "size": 310,
                                 "ctime": 1764547200} for v in vols]},
                 match=[matchers.query_param_matcher({"content": "snippets"})])
    for (node, kind, vmid), cfg in configs.items():
        def cb(request, cfg=cfg):
            if seen is not None:
                seen.append((threading.current_thread().name, request.headers.get("Authorization")))
            return 200, {"Content-Type": "application/json"}, json.dumps({"data": cfg})
        rsps.add_callback(responses.GET, f"{BASE}/nodes/{node}/{kind}/{vmid}/config", callback=cb)


def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- the happy path ----------------------------------------------------------------

@responses.activate
def test_guests_in_api_shapes(tmp_path):
    seen = []
    serve(responses, seen=seen)
    src = pveapi.ApiSource(api_settings(tmp_path), node="pve1")
    guests = {g.vmid: g for g in src.guests()}
    assert sorted(guests) == [120, 951, 952]
    ct = guests[951]
    assert (ct.type, ct.node, ct.name) == ("lxc", "pve1", "embed-api")
    assert [(n.key, n.address, n.hwaddr, n.tag) for n in ct.nics] == [
        ("net0", "10.0.0.151", "52:54:00:67:89:b1", None), ("net1", "192.168.50.151", "bc:24:11:5e:2a:01", 20)]
    vm = guests[120]                       # QEMU: ipconfig0 paired with net0, MAC from virtio=
    assert (vm.type, vm.node) == ("qemu", "pve2")
    assert [(n.address, n.prefixlen, n.gw, n.hwaddr, n.tag) for n in vm.nics] == [
        ("10.0.30.5", 24, "10.0.30.1", "a2:c0:43:67:08:a1", 30)]
    # the description's "net9:" text never becomes a NIC
    assert not ct.errors and ct.nic("net9") is None
    # token auth header as PVE expects it: PVEAPIToken=USER@REALM!TOKENID=SECRET
    assert {auth for _t, auth in seen} == {f"PVEAPIToken=phoenix@pve!audit={SECRET}"}


@responses.activate
def test_current_values_unless_pending_asked(tmp_path):
    responses.add(responses.GET, f"{BASE}/cluster/resources", json={"data": RESOURCES})
    cur = dict(CONFIGS[("pve1", "lxc", 951)])
    pending = dict(cur, net0=cur["net0"].replace("10.0.0.151", "10.0.0.160"))
    responses.add(responses.GET, f"{BASE}/nodes/pve1/lxc/951/config", json={"data": cur},
                  match=[matchers.query_param_matcher({"current": "1"})])
    responses.add(responses.GET, f"{BASE}/nodes/pve1/lxc/951/config", json={"data": pending},
                  match=[matchers.query_param_matcher({})])
    src = pveapi.ApiSource(api_settings(tmp_path))
    assert src.guest(951).nics[0].address == "10.0.0.151"
    assert src.guest(951, with_pending=True).nics[0].address == "10.0.0.160"


@responses.activate
def test_locate_status_nodes_and_config_files(tmp_path):
    serve(responses)
    src = pveapi.ApiSource(api_settings(tmp_path))
    assert src.locate(120) == pve.ConfigFile(120, "qemu", "pve2", "nodes/pve2/qemu/120/config")
    assert [c.vmid for c in src.config_files(node="pve2")] == [120, 952]
    assert [c.vmid for c in src.config_files(types=("lxc",))] == [951, 952]
    assert src.status(951) == "running" and src.status(952) == "stopped"
    assert src.node_addresses() == {"10.0.0.2": "pve1", "10.0.0.3": "pve2"}
    with pytest.raises(pve.NoSuchGuest, match="999"):
        src.locate(999)
    # /cluster/resources is asked once per source, not once per lookup
    assert sum(1 for c in responses.calls if "cluster/resources" in c.request.url) == 1


@responses.activate
def test_configs_are_fetched_concurrently(tmp_path):
    resources = [{"id": f"lxc/{v}", "type": "lxc", "vmid": v, "node": "pve1", "status": "stopped"}
                 for v in range(1000, 1064)]
    configs = {("pve1", "lxc", v): {"hostname": f"ct{v}", "net0": f"name=eth0,bridge=vmbr0,"
                                    f"hwaddr=52:54:00:00:{v // 256:02x}:{v % 256:02x},ip=10.1.{v // 256}.{v % 256}/16"}
               for v in range(1000, 1064)}
    seen = []
    serve(responses, resources=resources, configs=configs, seen=seen)
    guests = pveapi.ApiSource(api_settings(tmp_path), workers=8).guests()
    assert [g.vmid for g in guests] == list(range(1000, 1064))     # order kept
    threads = {t for t, _a in seen}
    assert 2 <= len(threads) <= 8 and all(t.startswith("phx-api") for t in threads)


@responses.activate
def test_cli_audit_over_the_api(tmp_path, capsys):
    serve(responses)
    code, out, err = run_cli(["--config", conf_file(tmp_path), "audit", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["verdict"], doc["guests"], doc["nics"]) == ("clear", 3, 4)


@responses.activate
def test_default_source_is_api_when_pve_root_is_missing(tmp_path, capsys):
    serve(responses)
    code, out, err = run_cli(["--config", conf_file(tmp_path), "reservations", "--format", "csv"], capsys)
    assert code == 0, err
    assert "a2:c0:43:67:08:a1,10.0.30.5,vm120,120,qemu,pve2,net0,30" in out


# -- failures: one line, exit 3 (the API) or 2 (the settings) ----------------------

def one_line_failure(code, err, expect_code, *needles):
    assert code == expect_code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("status,body,needles", [
    (401, {"data": None}, ["refused the API token phoenix@pve!audit", "401", "token_file"]),
    (403, {"data": None, "message": "Permission check failed (/vms/951, VM.Audit)\n"},
     ["may not GET cluster/resources", "403", "PVEAuditor"]),
    (500, {"data": None, "message": "cluster not ready - no quorum?\n"}, ["500", "failed"]),
    (502, "<html>Bad Gateway</html>", ["502"]),
])
@responses.activate
def test_http_errors_are_one_line_exit_3(tmp_path, capsys, status, body, needles):
    kw = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.add(responses.GET, f"{BASE}/cluster/resources", status=status, **kw)
    code, _out, err = run_cli(["--config", conf_file(tmp_path), "audit"], capsys)
    line = one_line_failure(code, err, 3, "phoenix-hook: could not check:", *needles)
    assert SECRET not in line


@pytest.mark.parametrize("exc,needles", [
    (requests.exceptions.ConnectTimeout("timed out"), ["did not answer", "timeout = 2"]),
    (requests.exceptions.ReadTimeout("read timed out"), ["did not answer"]),
    (requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                                  "self-signed certificate in certificate chain (_ssl.c:1006)"),
     ["TLS to https://pve1.example.invalid:8006 failed", "certificate verify failed", "verify_ssl"]),
    (requests.exceptions.ConnectionError("HTTPSConnectionPool: Max retries exceeded "
                                         "(Caused by NewConnectionError: [Errno 111] Connection refused)"),
     ["cannot connect to https://pve1.example.invalid:8006", "Connection refused"]),
])
@responses.activate
def test_network_errors_are_one_line_exit_3(tmp_path, capsys, exc, needles):
    responses.add(responses.GET, f"{BASE}/cluster/resources", body=exc)
    code, _out, err = run_cli(["--config", conf_file(tmp_path), "audit"], capsys)
    one_line_failure(code, err, 3, *needles)


@responses.activate
def test_a_failing_config_fetch_ends_the_pool_with_one_line(tmp_path, capsys):
    responses.add(responses.GET, f"{BASE}/cluster/resources", json={"data": RESOURCES})
    responses.add(responses.GET, f"{BASE}/cluster/status", json={"data": STATUS})
    responses.add(responses.GET, f"{BASE}/nodes/pve1/lxc/951/config", json={"data": CONFIGS[("pve1", "lxc", 951)]})
    responses.add(responses.GET, f"{BASE}/nodes/pve2/lxc/952/config", status=500,
                  json={"data": None, "message": "Configuration file 'nodes/pve2/lxc/952.conf' does not exist\n"})
    responses.add(responses.GET, f"{BASE}/nodes/pve2/qemu/120/config", body=requests.exceptions.ReadTimeout())
    code, _out, err = run_cli(["--config", conf_file(tmp_path), "audit"], capsys)
    one_line_failure(code, err, 3, "could not check")


class PveFailure(responses.Response):
    """An error as pveproxy sends it: the message in the HTTP reason phrase, body {"data": null}."""

    def __init__(self, url, status, reason):
        super().__init__(responses.GET, url, status=status, json={"data": None})
        self.pve_reason = reason

    def get_response(self, request):
        resp = super().get_response(request)
        resp.reason = self.pve_reason
        return resp


@responses.activate
def test_one_guest_config_gone_is_that_guests_error_not_the_runs(tmp_path, capsys):
    """A guest deleted (500 "does not exist") or gone (404) between /cluster/resources and
    its config fetch is that guest's error; the rest of the cluster is still audited."""
    responses.add(responses.GET, f"{BASE}/cluster/resources", json={"data": RESOURCES})
    responses.add(responses.GET, f"{BASE}/cluster/status", json={"data": STATUS})
    responses.add(responses.GET, f"{BASE}/nodes/pve1/lxc/951/config", json={"data": CONFIGS[("pve1", "lxc", 951)]})
    responses.add(PveFailure(f"{BASE}/nodes/pve2/lxc/952/config", 500,
                             "Configuration file 'nodes/pve2/lxc/952.conf' does not exist"))
    responses.add(responses.GET, f"{BASE}/nodes/pve2/qemu/120/config", status=404, json={"data": None})
    guests = {g.vmid: g for g in pveapi.ApiSource(api_settings(tmp_path)).guests()}
    assert sorted(guests) == [120, 951, 952]
    assert not guests[951].errors and guests[951].nics
    g = guests[952]
    assert (g.type, g.node, g.name, g.nics) == ("lxc", "pve2", "vector-db", ())
    [e] = g.errors
    assert "500" in e and "does not exist" in e and "deleted or migrated" in e and "\n" not in e
    assert "404" in guests[120].errors[0]
    code, out, err = run_cli(["--config", conf_file(tmp_path), "audit", "--json"], capsys)
    assert code == 1 and "Traceback" not in err, err
    doc = json.loads(out)
    assert doc["guests"] == 3
    assert sorted((f["kind"], tuple(f["vmids"])) for f in doc["findings"]) == [
        ("malformed", (120,)), ("malformed", (952,))]


@pytest.mark.parametrize("status,body", [
    (500, "cluster not ready - no quorum?"),
    (401, "authentication failure"),
    (403, "Permission check failed (/vms/952, VM.Audit)"),
    (596, "Connection timed out"),
])
@responses.activate
def test_other_config_fetch_failures_still_end_the_run(tmp_path, capsys, status, body):
    responses.add(responses.GET, f"{BASE}/cluster/resources", json={"data": RESOURCES})
    responses.add(responses.GET, f"{BASE}/cluster/status", json={"data": STATUS})
    for (node, kind, vmid), cfg in CONFIGS.items():
        if vmid == 952:
            responses.add(PveFailure(f"{BASE}/nodes/{node}/{kind}/{vmid}/config", status, body))
        else:
            responses.add(responses.GET, f"{BASE}/nodes/{node}/{kind}/{vmid}/config", json={"data": cfg})
    code, _out, err = run_cli(["--config", conf_file(tmp_path), "audit"], capsys)
    one_line_failure(code, err, 3, "could not check", str(status))


@responses.activate
def test_not_the_api_at_all(tmp_path, capsys):
    responses.add(responses.GET, f"{BASE}/cluster/resources", body="<html>welcome to nginx</html>")
    code, _out, err = run_cli(["--config", conf_file(tmp_path), "audit"], capsys)
    one_line_failure(code, err, 3, "did not answer JSON")


@responses.activate
def test_check_over_the_api_no_such_guest_is_usage(tmp_path, capsys):
    serve(responses)
    code, _out, err = run_cli(["--config", conf_file(tmp_path), "check", "777", "--source", "api"], capsys)
    one_line_failure(code, err, 2, "guest 777 is not in /cluster/resources")


def test_token_file_readable_by_others_is_refused(tmp_path, capsys):
    conf = conf_file(tmp_path)
    os.chmod(tmp_path / "token", 0o644)
    code, _out, err = run_cli(["--config", conf, "audit"], capsys)
    one_line_failure(code, err, 2, "readable by group or others", "mode 0644", f"chmod 600 {tmp_path}/token")


def test_token_file_missing_or_empty(tmp_path, capsys):
    conf = conf_file(tmp_path)
    (tmp_path / "token").unlink()
    code, _o, err = run_cli(["--config", conf, "audit"], capsys)
    one_line_failure(code, err, 2, "cannot read token_file", "No such file")
    token_file(tmp_path, text="\n")
    code, _o, err = run_cli(["--config", conf, "audit"], capsys)
    one_line_failure(code, err, 2, "must hold the API token secret")


def test_token_file_full_header_form_is_accepted(tmp_path):
    path = token_file(tmp_path, text=f"phoenix@pve!audit={SECRET}\n")
    assert pveapi.read_token(path) == SECRET
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_token_file_checked_is_the_file_read(tmp_path, monkeypatch):
    """No stat-then-open race: the mode is checked on the opened file (fstat), so a file
    swapped in after the check (here: right after the first stat or open of the path)
    is never read unchecked."""
    path = token_file(tmp_path)
    other = tmp_path / "other"
    other.write_text("stolen-or-planted\n")
    other.chmod(0o644)
    swapped = []
    real_stat, real_open = os.stat, os.open

    def swap_after(real):
        def call(p, *a, **kw):
            out = real(p, *a, **kw)
            if os.fspath(p) == path and not swapped:
                swapped.append(real.__name__)
                os.replace(other, path)
            return out
        return call
    monkeypatch.setattr(os, "stat", swap_after(real_stat))
    monkeypatch.setattr(os, "open", swap_after(real_open))
    assert pveapi.read_token(path) == SECRET
    assert swapped


def test_token_file_symlink_and_fifo_are_refused(tmp_path, capsys):
    real = token_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(pveapi.ApiSettingsError, match="is a symbolic link"):
        pveapi.read_token(str(link))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(pveapi.ApiSettingsError, match="not a regular file"):   # and no hang
        pveapi.read_token(str(fifo))


def test_incomplete_api_section_names_the_keys(tmp_path, capsys):
    conf = conf_file(tmp_path, api_lines="host = pve1.example.invalid\n")
    code, _o, err = run_cli(["--config", conf, "audit"], capsys)
    one_line_failure(code, err, 2, "lacks user, token_name, token_file")


def test_bad_api_values_are_settings_errors(tmp_path, capsys):
    conf = conf_file(tmp_path, api_lines="host = https://pve1:8006/\n")
    code, _o, err = run_cli(["--config", conf, "audit"], capsys)
    one_line_failure(code, err, 2, "[api] host = 'https://pve1:8006/' is not valid")
    for line, needle in [("port = 99999", "port"), ("verify_ssl = perhaps", "verify_ssl"),
                         ("backend = ssh", "backend"), ("timeout = 0", "timeout"),
                         ("user = root", "USER@REALM"), ("tokn = x", "unknown key 'tokn'")]:
        raw = parse(f"[api]\n{line}\n", "f.conf").api        # read raw, checked when used
        with pytest.raises(pveapi.ApiSettingsError, match=needle):
            pveapi.check_api(raw, "f.conf")


def test_a_bad_api_section_does_not_stop_the_settings_from_loading(tmp_path, capsys):
    """[api] is checked where the API is used: the hookscript reads the same file."""
    from phoenix_hook.settings import load
    tok = token_file(tmp_path)
    conf = conf_file(tmp_path, api_lines=f"host = pve1.example.invalid\nuser = phoenix@pve\n"
                     f"token_name = audit\ntoken_file = {tok}\ntimeout = 0\n")
    s = load(conf)
    assert s.api["timeout"] == "0" and s.node == "pve1"
    code, _o, err = run_cli(["--config", conf, "audit", "--source", "api"], capsys)
    one_line_failure(code, err, 2, "[api] timeout = '0' is not valid", "seconds from 0.5 to 300")


@pytest.mark.parametrize("key,value,needle", [
    ("token_name", SECRET, "looks like the token's secret"),       # the secret pasted as the ID
    ("token_name", f"phoenix@pve!audit={SECRET}", "the token ID"),
    ("token_file", SECRET, "an absolute path"),
])
def test_a_bad_token_value_is_never_echoed(tmp_path, capsys, key, value, needle):
    lines = {"host": "pve1.example.invalid", "user": "phoenix@pve", "token_name": "audit",
             "token_file": token_file(tmp_path)}
    lines[key] = value
    conf = conf_file(tmp_path, api_lines="".join(f"{k} = {v}\n" for k, v in lines.items()))
    code, _o, err = run_cli(["--config", conf, "audit", "--source", "api"], capsys)
    line = one_line_failure(code, err, 2, f"[api] {key} is not valid", "value is not shown", needle)
    assert SECRET not in line and value not in line


def test_lab_hook_is_not_stopped_by_a_bad_api_section(lab, pve, run_hook):
    """timeout = 0 in [api] once made every pre-start say "bad settings ... starting anyway"."""
    pve.settings(extra_sections=f"\n[api]\ntimeout = 0\ntoken_name = {SECRET}\n")
    pve.guest(951)
    lab.add_host("squat", "10.0.0.151/24", mac="16:0d:a0:c0:b9:1b")
    code, out, _recs = run_hook(lab, 951)
    assert code == 1 and "16:0d:a0:c0:b9:1b" in out and "start refused" in out, out
    assert "bad settings" not in out and SECRET not in out, out


def test_no_pve_root_and_no_api_section(tmp_path, capsys):
    p = tmp_path / "s.conf"
    p.write_text(f"[phoenix-hook]\npve_root = {tmp_path}/nothing\nnode = pve1\n")
    code, _o, err = run_cli(["--config", str(p), "audit"], capsys)
    one_line_failure(code, err, 2, "has no [api] section")
    code, _o, err = run_cli(["--config", str(p), "audit", "--source", "files"], capsys)
    one_line_failure(code, err, 2, "pve_root", "does not exist")


@responses.activate
def test_verify_ssl_false_warns_and_ca_file_is_passed_on(tmp_path, capsys):
    serve(responses)
    warned = []
    src = pveapi.ApiSource(api_settings(tmp_path, verify_ssl=False), warn=warned.append)
    src.guests()
    assert len(warned) == 1 and "verify_ssl = false" in warned[0] and "pve-root-ca.pem" in warned[0]
    assert {c.request.req_kwargs["verify"] for c in responses.calls} == {False}
    ca = tmp_path / "pve-root-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    src = pveapi.ApiSource(api_settings(tmp_path, verify_ssl=str(ca)), warn=warned.append)
    src.node_addresses()
    # What requests was asked to do, whichever proxmoxer (2.x, or Debian's 1.2) built the request.
    assert responses.calls[-1].request.req_kwargs["verify"] == str(ca)
    assert len(warned) == 1
    with pytest.raises(pveapi.ApiSettingsError, match="no such CA file"):
        pveapi.ApiSource(api_settings(tmp_path, verify_ssl=str(tmp_path / "missing.pem")))


@responses.activate
def test_verify_ssl_false_warning_reaches_stderr(tmp_path, capsys):
    serve(responses)
    conf = conf_file(tmp_path, api_lines=f"host = pve1.example.invalid\nuser = phoenix@pve\ntoken_name = audit\n"
                     f"token_file = {token_file(tmp_path)}\nverify_ssl = false\n")
    code, _out, err = run_cli(["--config", conf, "audit"], capsys)
    assert code == 0 and "warning: verify_ssl = false" in err


def test_config_text_keeps_single_line_scalars():
    text = pveapi.config_text({"hostname": "a", "template": 1, "onboot": True, "description": "x\ny",
                               "lxc": [["lxc.apparmor.profile", "unconfined"]], "digest": "d",
                               "net0": "name=eth0,ip=dhcp", "weird": "a\nnet5: name=x"})
    assert text.splitlines() == ["hostname: a", "template: 1", "onboot: 1", "lxc.apparmor.profile: unconfined",
                                 "net0: name=eth0,ip=dhcp"]


# -- backend = local: proxmoxer runs pvesh on the node ---------------------------

FAKE_PVESH = r'''#!{python}
import json, sys
# argv: get /path [-key value]... --output-format json
data = json.load(open({data!r}))
path = sys.argv[2]
if path not in data:
    sys.stderr.write("500 Internal Server Error: no such path " + path + "\n")
    sys.exit(2)
print(json.dumps(data[path]))
'''


def test_local_backend_runs_pvesh(tmp_path, monkeypatch):
    data = {"/cluster/resources": RESOURCES, "/cluster/status": STATUS}
    for (node, kind, vmid), cfg in CONFIGS.items():
        data[f"/nodes/{node}/{kind}/{vmid}/config"] = cfg
    (tmp_path / "data.json").write_text(json.dumps(data))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pvesh = bindir / "pvesh"
    pvesh.write_text(FAKE_PVESH.format(python=sys.executable, data=str(tmp_path / "data.json")))
    pvesh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    src = pveapi.ApiSource({"backend": "local", "timeout": 10.0})
    assert sorted(g.vmid for g in src.guests()) == [120, 951, 952]
    assert src.node_addresses()["10.0.0.3"] == "pve2"
    del data["/nodes/pve2/qemu/120/config"]
    (tmp_path / "data.json").write_text(json.dumps(data))
    with pytest.raises(pveapi.ApiError, match="500"):
        pveapi.ApiSource({"backend": "local"}).guests()


def test_local_backend_without_pvesh(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pveapi.ApiSettingsError, match="pvesh, which is not here"):
        pveapi.ApiSource({"backend": "local"}).guests()


def test_sources_choose():
    s = Settings(pve_root="/nonexistent-phx")
    assert sources.choose(None, s) == "api" and sources.choose("files", s) == "files"
    assert sources.choose(None, Settings(pve_root="/")) == "files"


def test_pve_reason_phrase_and_param_errors_are_shown(tmp_path):
    from proxmoxer.core import ResourceException
    src = pveapi.ApiSource(api_settings(tmp_path))
    e = src._translate(ResourceException(403, "Forbidden", "Permission check failed (/vms/951, VM.Audit)"),
                       "GET nodes/pve1/lxc/951/config")
    assert isinstance(e, pveapi.ApiError)
    assert "403 Forbidden: Permission check failed (/vms/951, VM.Audit)" in str(e)
    e = src._translate(ResourceException(400, "Bad Request", "Parameter verification failed.",
                                         errors={"type": "value 'x' does not have a value in the enumeration"}),
                       "GET cluster/resources")
    assert "400 Bad Request: Parameter verification failed." in str(e) and "enumeration" in str(e)
    assert "\n" not in str(e)


@responses.activate
def test_every_request_carries_the_timeout(tmp_path):
    """proxmoxer 1.2 (Debian 12) passes no timeout to requests: a silent API would hang the command."""
    serve(responses)
    src = pveapi.ApiSource(api_settings(tmp_path, timeout=3.5), workers=2)
    assert len(src.guests()) == 3
    src.node_addresses()
    assert len(responses.calls) == 5
    assert {c.request.req_kwargs["timeout"] for c in responses.calls} == {3.5}


def test_a_silent_api_ends_at_the_timeout(tmp_path):
    """A loopback listener that accepts and never answers: one line, exit 3, within the timeout."""
    import socket
    import time
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        src = pveapi.ApiSource(api_settings(tmp_path, host="127.0.0.1", port=srv.getsockname()[1],
                                            timeout=0.5))
        result = {}

        def fetch():
            try:
                src.guests()
            except Exception as exc:       # noqa: BLE001  (checked below)
                result["exc"] = exc
        t = time.monotonic()
        th = threading.Thread(target=fetch, daemon=True)
        th.start()
        th.join(10)
        assert not th.is_alive(), "GET cluster/resources was still waiting after 10 s"
        assert time.monotonic() - t < 5
        assert isinstance(result.get("exc"), pveapi.ApiError)
        assert "did not answer GET cluster/resources within timeout = 0.5 s" in str(result["exc"])
    finally:
        srv.close()

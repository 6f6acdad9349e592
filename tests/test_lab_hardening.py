"""Lab tests for the hook's promises under attack or mistakes (issue: never a false "free",
never past the deadline, never silent). The real hookscript, run as PVE runs it, in
namespaces this test builds; what it sends to the journal goes to a fake logger(1).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import REPO, hook_argv

P = "phoenix-hook:"
SQUAT_MAC = "16:0d:a0:c0:b9:1b"
GIL_HANG = REPO / "tests" / "gil_hang"


def warnings(out):
    return [x for x in out.splitlines() if x.startswith("WARNING:")]


def only_record(recs):
    assert len(recs) == 1, recs
    return recs[0]


# -- 1. the deadline holds whatever the check does ---------------------------------

@pytest.mark.parametrize("on_error,exit_code", [("allow", 0), ("refuse", 1)])
def test_a_check_stuck_in_c_holding_the_gil_ends_at_the_deadline(lab, pve, run_hook, on_error, exit_code):
    """The check hangs in the regex engine, in a thread, holding the GIL (tests/gil_hang):
    no signal handler and no other thread of its process can run. The hook still ends by
    deadline_s + 3 s (the subprocess timeout fails the test otherwise), and on_error
    decides, loudly."""
    pve.guest(951)
    pve.guest(952, node="pve2")              # the cluster's configs are read in a thread
    pve.settings(deadline_s=1, probe_timeout_ms=250, on_error=on_error)
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)   # never reached: the check hangs first
    code, out, recs = run_hook(lab, 951, timeout=1 + 3,
                               env_extra={"PYTHONPATH": f"{GIL_HANG}:{REPO}"})
    assert code == exit_code, out
    assert "Traceback" not in out
    why = "the check did not finish within deadline_s = 1 and was stopped"
    if on_error == "allow":
        assert warnings(out) == [f"WARNING: {P} guest 951 was NOT checked for address conflicts ({why}); "
                                 f"starting anyway (on_error = allow)"], out
    else:
        assert f"{P} guest 951 not started: the check failed ({why}) and on_error = refuse" in out, out
    r = only_record(recs)
    assert (r["verdict"], r["exit"], r["error"]) == ("error", exit_code, why)
    assert any("951" in j and why in j for j in pve.journal()), pve.journal()


@pytest.mark.parametrize("on_error,exit_code", [("allow", 0), ("refuse", 1)])
def test_a_config_line_built_to_stall_parsing_cannot_hold_a_start(lab, pve, run_hook, on_error, exit_code):
    """A VM on another node that any cloud-init editor can write: `ciuser: a` + 60,000
    spaces + `b` (quadratic for a backtracking parser). The start of an unrelated container
    ends within deadline_s + 3 s, decided or by on_error."""
    from phoenix_hook.net.lab import write_tree
    pve.guest(951)
    write_tree(str(pve.root), "pve2", {9200: "name: evil\nciuser: a" + " " * 60000 + "b\n"
                                             "net0: virtio=BC:24:11:00:92:00,bridge=vmbr0\n"}, kind="qemu")
    pve.settings(deadline_s=2, probe_timeout_ms=250, on_error=on_error)
    lab.add_host("gw", "10.0.0.1/24")
    code, out, recs = run_hook(lab, 951, timeout=2 + 3)
    assert "Traceback" not in out
    r = only_record(recs)
    if r["verdict"] == "clear":                   # parsed in time: checked and free
        assert code == 0 and f"{P} CT 951 net0 10.0.0.151 is free on vmbr0" in out, out
    else:                                         # stopped at the deadline: on_error decides
        assert (r["verdict"], code) == ("error", exit_code), out
        assert "deadline_s = 2" in r["error"]


# -- 2. an ARP storm never makes an address "free" ------------------------------------

STORM = r"""
import os, random, socket, struct, sys, time
from phoenix_hook.net import arp
mac = open('/sys/class/net/eth0/address').read().strip()
rng = random.Random(int(sys.argv[1]))
frames = [arp.build_request(mac, '10.%d.%d.%d' % (rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)),
                            '10.%d.%d.%d' % (rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)))
          for _ in range(512)]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind(('eth0', 0))
print('ready', flush=True)
sent, t0 = 0, time.monotonic()
while True:
    for f in frames:
        try:
            s.send(f)
        except OSError:
            pass
    sent += len(frames)
    if sent % (512 * 200) == 0:
        print('sent %d %.0f/s' % (sent, sent / (time.monotonic() - t0)), flush=True)
"""


def test_an_arp_storm_never_yields_free(lab, pve, run_hook):
    """Two storm processes send ARP requests about other addresses as fast as Python can,
    while a kernel host holds the guest's address: 20 starts with on_error = refuse, and
    not one is reported free or started."""
    pve.guest(951)
    pve.settings(probe_timeout_ms=300, deadline_s=4, on_error="refuse")
    lab.add_host("holder", "10.0.0.151/24", mac=SQUAT_MAC)
    storms = [lab.add_host(f"storm{i}") for i in range(2)]
    lab.wait_link_ready()
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    for i, ns in enumerate(storms):
        lab.spawn(ns, [sys.executable, "-c", STORM, str(i)], env=env, ready="ready")
    outcomes = []
    for _ in range(20):
        code, out, recs = run_hook(lab, 951, timeout=4 + 3)
        r = only_record(recs)
        outcomes.append(r["verdict"])
        assert code == 1, out                                  # refused: conflict or could not check
        assert "is free" not in out and r["verdict"] in ("conflict", "error"), out
    print(f"storm outcomes: {outcomes.count('conflict')} conflict, {outcomes.count('error')} could not check")
    assert all(p.poll() is None for p in lab.procs), "the storm stopped before the runs ended"


# -- 5. a settings mistake never switches the guard off -----------------------------

@pytest.mark.parametrize("kw,extra,named", [
    ({"mode": "sometimes"}, "", "mode = 'sometimes' is not valid"),
    ({"probe_timout_ms": 200}, "", "unknown key 'probe_timout_ms'"),
    ({"probe_timeout_ms": 5000, "deadline_s": 0.5}, "", "probe_timeout_ms = 5000 can take 5 s"),
    ({"on_error": "deny"}, "", "on_error = 'deny' is not valid"),
    ({}, "[phoenix_hook]\nmode = off\n", "unknown section [phoenix_hook]"),
    ({}, "[guest:951]\nmode = off\nmode = warn\nmode = enforce\n", "already exists"),
    ({}, "oops, not a key\n", "not a valid INI file"),
])
def test_a_settings_mistake_is_named_and_the_guest_is_checked_anyway(lab, pve, run_hook, kw, extra, named):
    pve.guest(951)
    pve.settings(extra_sections=extra, **dict({"probe_timeout_ms": 250}, **kw))
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out                                           # checked, and refused
    assert f"{P} CT 951 net0 10.0.0.151 is in use by {SQUAT_MAC}" in out, out
    lines = [x for x in warnings(out) if x.startswith(f"WARNING: {P} settings: {pve.conf}")]
    assert len(lines) == 1 and named in lines[0], out
    assert any(w in lines[0] for w in ("; using ", "; ignored", "are ignored")), lines[0]
    r = only_record(recs)
    assert r["verdict"] == "conflict" and named in r["settings_errors"][0]
    assert any(named in j for j in pve.journal())


# -- 8. every unchecked start is loud ------------------------------------------------

def test_an_unchecked_start_warns_in_the_task_log_and_the_journal(lab, pve, run_hook):
    from test_lab_hook import net
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1", bridge="vmbr9")})
    code, out, _recs = run_hook(lab, 951)
    assert code == 0
    assert any("NOT checked" in x and "vmbr9" in x for x in warnings(out)), out
    assert [j for j in pve.journal() if "vmbr9" in j and "WITHOUT an address conflict check" in j], pve.journal()
    assert all(j.startswith("-t phoenix-hook -p daemon.warning -- ") for j in pve.journal())


def test_a_symlink_as_the_decision_log_is_not_followed(lab, pve, run_hook, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    pve.log_file.parent.mkdir(parents=True)
    pve.log_file.symlink_to(target)
    pve.guest(951)
    lab.add_host("gw", "10.0.0.1/24")
    code, out, _recs = run_hook(lab, 951)
    assert code == 0, out
    assert target.read_text() == ""
    assert f"cannot write the decision log {pve.log_file}" in out


# -- 9. a device answering every probe is named ---------------------------------------

def test_a_mac_answering_for_many_addresses_is_flagged_suspicious(lab, pve, run_hook, responder):
    vmids = [951, 952, 953]
    for v in vmids:
        pve.guest(v)
    pve.settings(probe_timeout_ms=250)
    ips = [pve.spec(v)["ip"] for v in vmids]
    responder(lab.add_host("liar", mac=SQUAT_MAC), "--iface", "eth0", *sum((["--ip", ip] for ip in ips), []))
    outs = []
    for v in vmids:
        code, out, recs = run_hook(lab, v)
        assert code == 1, out
        outs.append(out)
    assert not any("suspicious responder" in o for o in outs[:2]), outs
    note = next(x for x in outs[2].splitlines() if "suspicious responder" in x)
    assert f"{SQUAT_MAC} has claimed 3 different addresses ({', '.join(ips)})" in note, note
    assert "mode = warn in [guest:953]" in note
    assert any("suspicious responder" in n for n in only_record(recs)["report"]["notes"])


def test_a_mac_answering_outside_the_bridges_subnets_is_flagged(lab, pve, run_hook, responder):
    """The bridge's networks come from /proc (hostnet.ip_networks), not `ip addr`: the note names them."""
    lab.add_host_address("10.0.0.2/24")
    pve.guest(951, nets={"net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:09:51,ip=10.77.0.5/24,type=veth"})
    pve.settings(probe_timeout_ms=250)
    responder(lab.add_host("liar", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.77.0.5")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    note = next(x for x in out.splitlines() if "suspicious responder" in x)
    assert f"{SQUAT_MAC} answers for 10.77.0.5, outside every subnet of vmbr0 (10.0.0.0/24" in note, note

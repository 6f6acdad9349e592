"""scan.py, the pure core of `phoenix-hook scan`: targets, the send schedule, owners and flags.

No sockets: the schedule runs on a fake clock, the driver loop on a fake wire.
"""
from __future__ import annotations

import errno
import heapq
import ipaddress
import json

import pytest
from hypothesis import given, settings, strategies as st

from phoenix_hook.net import arp, scan
from phoenix_hook.pve.guest import parse_config
from phoenix_hook.checks import answers
from phoenix_hook.checks.owners import (DUP, MISMATCH, UNCLAIMED, Owners,
                                        guest_claims, host_claims, mac_claims, node_claims)
from phoenix_hook.pve.cluster import corosync_nodes
from phoenix_hook.net.wire import WireError

BR_MAC = "02:aa:00:00:00:01"


def net(text):
    return ipaddress.ip_network(text)


# -- targets and options -------------------------------------------------------
@pytest.mark.parametrize("text,want", [("10.0.0.0/24", "10.0.0.0/24"), ("10.0.0.7/24", "10.0.0.0/24"),
                                       ("10.0.0.7", "10.0.0.7/32"), (" 192.168.1.0/30 ", "192.168.1.0/30")])
def test_parse_cidr_accepts_networks_and_addresses(text, want):
    assert str(scan.parse_cidr(text)) == want


@pytest.mark.parametrize("text", ["", "10.0.0.0/33", "10.0.0/24", "vmbr0", "10.0.0.256/24", "fd00::/64"])
def test_parse_cidr_refuses_with_one_line(text):
    with pytest.raises(scan.ScanUsage) as e:
        scan.parse_cidr(text)
    assert "\n" not in str(e.value)


def test_size_limits():
    scan.check_size(net("10.0.0.0/16"), yes=False)
    with pytest.raises(scan.ScanUsage, match="--yes"):
        scan.check_size(net("10.0.0.0/15"), yes=False)
    scan.check_size(net("10.0.0.0/12"), yes=True)
    with pytest.raises(scan.ScanUsage, match="parts of /12"):
        scan.check_size(net("10.0.0.0/8"), yes=True)


def test_targets_include_network_and_broadcast_like_arp_scan():
    assert [scan.ip_str(n) for n in scan.targets(net("10.0.0.4/30"))] == \
        ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"]


@pytest.mark.parametrize("vlan", [None, 20])
def test_request_frames(vlan):
    frame_for = scan.request_frames(BR_MAC, "10.0.0.1", vlan, probe_for=["10.0.0.1"])
    pkt = arp.parse(frame_for(scan.ip_int("10.0.0.77")))
    assert (pkt.op, pkt.sender_mac, pkt.sender_ip, pkt.target_ip, pkt.vlan, pkt.eth_dst) == \
        (arp.ARP_REQUEST, BR_MAC, "10.0.0.1", "10.0.0.77", vlan, arp.BROADCAST)
    own = arp.parse(frame_for(scan.ip_int("10.0.0.1")))
    assert own.is_probe and own.target_ip == "10.0.0.1"       # the host's own address: RFC 5227 probe
    probes = scan.request_frames(BR_MAC, None, vlan)
    assert arp.parse(probes(scan.ip_int("10.0.0.9"))).is_probe
    assert len(frame_for(1)) == arp.MIN_FRAME                 # arp.build pads to the Ethernet minimum


def _reply(mac="02:00:00:00:00:05", ip="10.0.0.5", to=BR_MAC, vlan=None, op=arp.ARP_REPLY):
    frame = arp.build(op, eth_src=mac, eth_dst=to, sender_mac=mac, sender_ip=ip, target_mac=to,
                      target_ip="10.0.0.1", vlan=vlan)
    return arp.parse(frame)


def test_is_answer():
    assert scan.is_answer(_reply(), BR_MAC, None)
    assert scan.is_answer(_reply(to=arp.BROADCAST), BR_MAC, None)          # some devices broadcast
    assert scan.is_answer(_reply(vlan=20), BR_MAC, 20)
    assert not scan.is_answer(_reply(vlan=20), BR_MAC, None)                # another VLAN
    assert not scan.is_answer(_reply(), BR_MAC, 20)
    assert not scan.is_answer(_reply(op=arp.ARP_REQUEST), BR_MAC, None)     # a request is no answer
    assert not scan.is_answer(_reply(to="02:00:00:00:00:99"), BR_MAC, None)  # someone else's
    assert not scan.is_answer(_reply(mac=BR_MAC), BR_MAC, None)             # our own frame
    assert not scan.is_answer(_reply(mac="02:00:00:00:00:07"), BR_MAC, None, {"02:00:00:00:00:07"})
    assert not scan.is_answer(_reply(ip="0.0.0.0"), BR_MAC, None)


# -- the schedule ----------------------------------------------------------------
def simulate(addresses, responders, delay=0.0005, step=0.0001, limit=60.0, **kw):
    """Run a Sweep on a fake clock; responders: {ip_int: [macs]} answer each request after delay."""
    sw = scan.Sweep(addresses, **kw)
    now = 0.0
    sw.start(now)
    pending, log = [], []
    while not sw.done(now):
        assert now < limit, "the sweep never ended"
        for ip in sw.due(now):
            log.append((now, ip))
            for mac in responders.get(ip, ()):
                heapq.heappush(pending, (now + delay, ip, mac))
        wake = sw.wakeup(now)
        assert wake >= now
        if pending:
            wake = min(wake, pending[0][0])
        now = max(wake, now + step)
        while pending and pending[0][0] <= now:
            _t, ip, mac = heapq.heappop(pending)
            sw.answer(ip, mac, now)
    return sw, log, now


def test_first_pass_in_address_order_then_retries_for_the_silent_only():
    addrs = scan.targets(net("10.0.0.0/26"))
    live = {a: ["02:00:00:00:00:%02x" % (a & 255)] for a in addrs if a % 3 == 0}
    sw, log, end = simulate(addrs, live, retries=2, timeout=0.1, rate=2000)
    first = [ip for _t, ip in log[:len(addrs)]]
    assert first == list(addrs)
    for a in addrs:
        assert sw.attempts[a] == (1 if a in live else 3)
    assert sw.sent == len(addrs) + 2 * (len(addrs) - len(live))
    assert set(sw.answers) == set(live)


def test_waits_grow_by_the_backoff():
    (a,) = addrs = [scan.ip_int("10.0.0.9")]
    sw, log, end = simulate(addrs, {}, retries=3, timeout=0.1, backoff=1.5, rate=1000)
    times = [t for t, _ in log]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps == pytest.approx([0.1, 0.15, 0.225], abs=0.001)
    assert end == pytest.approx(times[-1] + 0.3375, abs=0.001)   # the last wait, then done


def test_rate_is_bounded():
    addrs = scan.targets(net("10.0.0.0/22"))
    sw, log, end = simulate(addrs, {}, retries=1, timeout=0.05, rate=5000)
    burst = sw.burst
    for i, (t, _ip) in enumerate(log):
        assert i + 1 <= burst + 5000 * t + 1e-6
    assert end >= (len(log) - burst) / 5000


def test_a_late_answer_stops_the_retries():
    a = scan.ip_int("10.0.0.9")
    sw, log, _end = simulate([a], {a: ["02:00:00:00:00:09"]}, delay=0.12, retries=3, timeout=0.1)
    assert sw.attempts[a] == 2                  # answered the first request after the first retry
    assert set(sw.answers[a]) == {"02:00:00:00:00:09"}


def test_every_answer_is_kept_and_duplicates_count_once():
    a = scan.ip_int("10.0.0.9")
    sw, _log, _end = simulate([a], {a: ["02:00:00:00:00:01", "02:00:00:00:00:02"]}, retries=2, timeout=0.05)
    assert sorted(sw.answers[a]) == ["02:00:00:00:00:01", "02:00:00:00:00:02"]
    assert not sw.answer(a, "02:00:00:00:00:01", 9.0)
    assert not sw.answer(scan.ip_int("192.168.1.1"), "02:00:00:00:00:01", 9.0)   # not a target
    assert scan.ip_int("192.168.1.1") not in sw.answers


def test_all_answered_ends_after_the_linger():
    addrs = list(scan.targets(net("10.0.0.0/30")))
    sw, log, end = simulate(addrs, {a: ["02:00:00:00:00:01"] for a in addrs}, retries=2, timeout=0.1)
    assert sw.sent == 4
    assert end == pytest.approx(log[-1][0] + 0.1, abs=0.001)


def test_retries_zero_sends_once():
    addrs = scan.targets(net("10.0.0.0/29"))
    sw, _log, _end = simulate(addrs, {}, retries=0, timeout=0.05)
    assert sw.sent == 8 and set(sw.attempts.values()) == {1}


def test_a_slash_24_with_60_hosts_finishes_in_well_under_a_second():
    addrs = scan.targets(net("10.0.0.0/24"))
    live = {a: ["m"] for a in addrs if 10 <= a & 255 < 70}
    sw, _log, end = simulate(addrs, live)                        # the defaults
    assert set(sw.answers) == set(live)
    assert end < 0.7


def test_bad_options():
    with pytest.raises(ValueError):
        scan.Sweep([1], rate=0)
    with pytest.raises(ValueError):
        scan.Sweep([1], backoff=0.5)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 31)), st.integers(0, 3), st.floats(0.0, 0.3), st.integers(100, 20000))
def test_schedule_invariants(live, retries, delay, rate):
    addrs = range(1000, 1032)
    responders = {1000 + i: ["02:00:00:00:00:01"] for i in live}
    sw, log, end = simulate(addrs, responders, delay=delay, retries=retries, timeout=0.05, rate=rate,
                            step=0.0005)
    assert set(sw.answers) <= set(responders)
    if delay < 0.05:                            # answers within the first wait are never missed
        assert set(sw.answers) == set(responders)
    for a in addrs:
        assert 1 <= sw.attempts[a] <= retries + 1
        if a not in sw.answers:
            assert sw.attempts[a] == retries + 1
    assert all(i + 1 <= sw.burst + rate * t + 1e-6 for i, (t, _) in enumerate(log))


# -- owners and flags ----------------------------------------------------------
def guests():
    lxc = lambda vmid, name, net0, extra="": parse_config(f"hostname: {name}\nnet0: {net0}\n{extra}", vmid,
                                                          "lxc", "pve1")
    return [
        lxc(951, "embed-api", "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24"),
        lxc(952, "vector-db", "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B2,ip=10.0.0.152/24"),
        lxc(953, "web-proxy", "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B3,ip=10.0.0.153/24"),
        lxc(955, "model-server", "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B5,ip=10.0.0.155/24,tag=20"),
        lxc(956, "dhcp-guest", "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B6,ip=dhcp"),
        lxc(900, "base-template", "name=eth0,bridge=vmbr0,hwaddr=52:54:00:AA:BB:CC,ip=10.0.0.200/24",
            "template: 1\n"),
        parse_config("name: web\nnet0: virtio=BC:24:11:00:01:20,bridge=vmbr0\nipconfig0: ip=10.0.0.120/24\n",
                     120, "qemu", "pve2"),
    ]


def owners(bridge="vmbr0", vlan=None):
    g = guests()
    claims = guest_claims(g, bridge=bridge, vlan=vlan)
    claims += host_claims("pve1", [("10.0.0.1", BR_MAC)])
    claims += node_claims([("pve1", "10.0.0.1"), ("pve2", "10.0.0.2")], "pve1")
    return claims, Owners(claims, mac_claims(g))


def rows_for(heard, **kw):
    _claims, o = owners(**kw)
    return {(r.ip, r.mac): r for r in answers.build_rows(heard, o)}


def test_owner_and_no_flags_when_the_configured_mac_answers():
    r = rows_for({"10.0.0.151": {"52:54:00:67:89:b1": 0}})[("10.0.0.151", "52:54:00:67:89:b1")]
    assert (r.owner, r.owner_vmid, r.flags, r.owner_by) == ("CT 951 embed-api", 951, [], "address")
    assert r.vendor == "locally administered"           # 52:54:00 has the U/L bit set


def test_mac_mismatch_names_the_guest_the_mac_belongs_to():
    r = rows_for({"10.0.0.152": {"52:54:00:67:89:b3": 0}})[("10.0.0.152", "52:54:00:67:89:b3")]
    assert r.flags == [MISMATCH] and r.owner == "CT 952 vector-db"
    assert r.mac_owner == "CT 953 web-proxy"


def test_dup_flags_both_macs():
    rows = rows_for({"10.0.0.151": {"52:54:00:67:89:b1": 0, "02:00:00:00:00:77": 0}})
    assert rows[("10.0.0.151", "52:54:00:67:89:b1")].flags == [DUP]
    assert rows[("10.0.0.151", "02:00:00:00:00:77")].flags == [DUP, MISMATCH]


def test_unclaimed_and_owner_by_mac():
    rows = rows_for({"10.0.0.60": {"00:1b:21:00:00:60": 0}, "10.0.0.61": {"52:54:00:67:89:b6": 0}})
    assert rows[("10.0.0.60", "00:1b:21:00:00:60")].flags == [UNCLAIMED]
    dhcp = rows[("10.0.0.61", "52:54:00:67:89:b6")]
    assert (dhcp.owner, dhcp.owner_vmid, dhcp.owner_by, dhcp.flags) == ("CT 956 dhcp-guest", 956, "mac", [])


def test_host_and_cluster_nodes_own_their_addresses():
    rows = rows_for({"10.0.0.1": {"02:00:00:00:00:66": 0}, "10.0.0.2": {"02:00:00:00:00:02": 0}})
    thief = rows[("10.0.0.1", "02:00:00:00:00:66")]
    assert thief.owner == "host pve1" and thief.flags == [MISMATCH]
    node = rows[("10.0.0.2", "02:00:00:00:00:02")]
    assert node.owner == "host pve2" and node.flags == []      # MAC unknown: no mismatch claimed


def test_qemu_guest_on_another_node_and_vlan_scoping():
    assert rows_for({"10.0.0.120": {"bc:24:11:00:01:20": 0}})[("10.0.0.120", "bc:24:11:00:01:20")].owner == "VM 120 web"
    # CT 955 is on VLAN 20: untagged, its address is nobody's; in VLAN 20 it is its own.
    assert rows_for({"10.0.0.155": {"52:54:00:67:89:b5": 0}})[("10.0.0.155", "52:54:00:67:89:b5")].owner_by == "mac"
    r = rows_for({"10.0.0.155": {"52:54:00:67:89:b5": 0}}, vlan=20)[("10.0.0.155", "52:54:00:67:89:b5")]
    assert r.owner == "CT 955 model-server" and r.owner_by == "address"


def test_two_guests_configured_with_one_address():
    g = [parse_config(f"hostname: g{v}\nnet0: name=eth0,bridge=vmbr0,hwaddr=02:00:00:00:00:{v - 900:02x},"
                      f"ip=10.0.0.5/24\n", v, "lxc", "pve1") for v in (901, 902)]
    o = Owners(guest_claims(g, "vmbr0"), mac_claims(g))
    (r,) = answers.build_rows({"10.0.0.5": {"02:00:00:00:00:02": 0}}, o)
    assert (r.owner, r.owner_vmid, r.flags) == ("CT 902 g902", 902, [])
    (r,) = answers.build_rows({"10.0.0.5": {"02:00:00:00:00:99": 0}}, o)
    assert r.owner == "CT 901 g901, CT 902 g902" and r.flags == [MISMATCH]


def test_silent_lists_configured_addresses_that_did_not_answer():
    claims, _o = owners()
    quiet = answers.silent(claims, net("10.0.0.0/24"), {"10.0.0.151"})
    assert [(s.ip, s.vmid, s.nic) for s in quiet] == [("10.0.0.120", 120, "net0"), ("10.0.0.152", 952, "net0"),
                                                      ("10.0.0.153", 953, "net0")]
    assert answers.silent(claims, net("10.0.0.152/31"), set())[0].to_json() == \
        {"ip": "10.0.0.152", "vmid": 952, "nic": "net0", "owner": "CT 952 vector-db", "node": "pve1"}


def test_rows_sorted_by_address_and_exit_code():
    rows = answers.build_rows({scan.ip_int("10.0.0.10"): {"02:00:00:00:00:0a": 0},
                            "10.0.0.9": {"02:00:00:00:00:09": 0}}, Owners())
    assert [r.ip for r in rows] == ["10.0.0.9", "10.0.0.10"]
    assert answers.exit_code(r.flags for r in rows) == 0            # UNCLAIMED is no conflict
    assert answers.exit_code([[DUP]]) == 1 and answers.exit_code([[MISMATCH]]) == 1
    assert json.dumps(rows[0].to_json())


def test_vendor_words():
    assert answers.vendor_words("00:1b:21:00:00:01", lambda m: "Intel Corporate") == "Intel Corporate"
    assert answers.vendor_words("02:00:00:00:00:01", lambda m: None) == "locally administered"
    assert answers.vendor_words("00:00:00:00:00:01", lambda m: None) is None


COROSYNC = """\
logging {
  debug: off
}
nodelist {
  node {
    name: pve1
    nodeid: 1
    ring0_addr: 10.0.0.11
  }
  node {
    name: pve2   # the second one
    ring0_addr: 10.0.0.12
    ring1_addr: pve2-backup.lan
  }
  node {
    ring0_addr: 10.0.0.13
  }
}
totem {
  interface {
    linknumber: 0
  }
}
"""


def test_corosync_nodes():
    assert corosync_nodes(COROSYNC) == [("pve1", "10.0.0.11"), ("pve2", "10.0.0.12")]
    assert [c.owner for c in node_claims(corosync_nodes(COROSYNC), "pve1")] == ["host pve2"]


@given(st.text())
def test_corosync_parser_never_raises(text):
    for name, ip in corosync_nodes(text):
        ipaddress.ip_address(ip)


@given(st.lists(st.sampled_from(["nodelist {", "node {", "}", "name: a", "ring0_addr: 10.0.0.1",
                                 "ring1_addr: ::1", "ring0_addr: x", "{", "quorum {"]), max_size=30))
def test_corosync_parser_on_shuffled_structure(lines):
    corosync_nodes("\n".join(lines))


# -- the driver loop over a fake wire ------------------------------------------------
class FakeWire:
    """Answers requests for `hosts` {ip: [macs]}; fails the first `busy` sends with ENOBUFS."""

    def __init__(self, hosts, busy=0, fail=None):
        self.hosts, self.busy, self.fail = hosts, busy, fail
        self.inbox, self.sent = [], []

    def send(self, ifname, frame):
        if self.fail:
            raise WireError(self.fail, "sending on vmbr0 failed")
        if self.busy:
            self.busy -= 1
            raise WireError(errno.ENOBUFS, "No buffer space available")
        pkt = arp.parse(frame)
        self.sent.append(pkt.target_ip)
        for mac in self.hosts.get(pkt.target_ip, ()):
            self.inbox.append((ifname, arp.build_reply(mac, pkt.target_ip, pkt.sender_mac, pkt.sender_ip), None))

    def receive(self, timeout):
        out, self.inbox = self.inbox, []
        return out


def test_drive_collects_answers_and_waits_out_a_full_queue():
    from phoenix_hook.net.sweep import drive
    hosts = {"10.0.0.5": ["02:00:00:00:00:05"], "10.0.0.6": ["02:00:00:00:00:06", "02:00:00:00:00:66"]}
    wire = FakeWire(hosts, busy=3)
    sw = scan.Sweep(scan.targets(net("10.0.0.0/29")), retries=1, timeout=0.02)
    drive(sw, wire, "vmbr0", scan.request_frames(BR_MAC, "10.0.0.1", None),
          lambda p: scan.is_answer(p, BR_MAC, None))
    assert {scan.ip_str(k): sorted(v) for k, v in sw.answers.items()} == {k: sorted(v) for k, v in hosts.items()}
    assert sw.sent == 8 + 6 and len(wire.sent) == sw.sent


def test_drive_raises_on_a_real_send_failure():
    from phoenix_hook.net.sweep import drive
    sw = scan.Sweep([scan.ip_int("10.0.0.5")])
    with pytest.raises(WireError):
        drive(sw, FakeWire({}, fail=errno.ENETDOWN), "vmbr0", scan.request_frames(BR_MAC, None, None),
              lambda p: True)


# -- output shapes ----------------------------------------------------------------
def test_csv_and_table():
    from phoenix_hook.cli import scan as cmd_scan
    claims, o = owners()
    rows = answers.build_rows({"10.0.0.151": {"52:54:00:67:89:b1": 0, "02:00:00:00:00:77": 0}}, o)
    quiet = answers.silent(claims, net("10.0.0.150/31"), {"10.0.0.151"})
    lines = cmd_scan.csv_text(rows, quiet + answers.silent(claims, net("10.0.0.152/32"), set())).splitlines()
    assert lines[0] == "ip,mac,vendor,owner,owner_vmid,flags"
    assert lines[1] == "10.0.0.151,02:00:00:00:00:77,locally administered,CT 951 embed-api,951,DUP MAC-MISMATCH"
    assert lines[-1] == "10.0.0.152,,,CT 952 vector-db,952,SILENT"
    result = {"cidr": "10.0.0.0/24", "bridge": "vmbr0", "vlan": None, "sent": 3, "source_ip": "10.0.0.1",
              "elapsed_ms": 250, "local": []}
    text = cmd_scan.table(result, rows, quiet, color=False)
    assert "CT 951 embed-api" in text and "\033[" not in text
    assert "Conflicts: 10.0.0.151 DUP MAC-MISMATCH" in text
    assert "\033[31;1mDUP\033[0m" in cmd_scan.table(result, rows, quiet, color=True)


def test_progress_line_only_when_asked(monkeypatch):
    import io
    from phoenix_hook.cli import scan as cmd_scan
    err = io.StringIO()
    monkeypatch.setattr(cmd_scan.sys, "stderr", err)
    sw = scan.Sweep(scan.targets(net("10.0.0.0/20")))
    cmd_scan._Progress(4096, "scan 10.0.0.0/20 on vmbr0", on=False)(sw, 1.0)
    assert err.getvalue() == ""
    p = cmd_scan._Progress(4096, "scan 10.0.0.0/20 on vmbr0", on=True)
    p(sw, 1.0)
    p(sw, 1.1)                                   # at most five updates a second
    assert err.getvalue().count("\r") == 1 and "0/4096 addresses answered" in err.getvalue()
    p(sw, 1.15, final=True)
    assert err.getvalue().endswith("\r\033[K")    # the line is wiped at the end


@pytest.mark.parametrize("lost,code", [(0, 0), (12, 3)])
def test_scan_says_when_frames_were_lost(tmp_path, monkeypatch, capsys, lost, code):
    """Frames the kernel dropped mean answers may be missing: said on stderr, counted in
    the JSON, and with nothing found the exit is 3 (could not scan), never 0."""
    from phoenix_hook.cli import main as cli
    from phoenix_hook.net import hostnet, sweep

    (tmp_path / "pve" / "nodes" / "pve1" / "lxc").mkdir(parents=True)
    conf = tmp_path / "c.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {tmp_path}/pve\nnode = pve1\n")
    link = hostnet.Link(name="vmbr0", mac=BR_MAC, up=True, noarp=False, carrier=True, is_bridge=True,
                        vlan_filtering=False)

    def fake_sweep(bridge, vlan, net_, **kw):
        return sweep.SweepResult(net=net("10.0.0.0/30"), link=link, tag=None, source_ip="10.0.0.1",
                                 answers={scan.ip_int("10.0.0.2"): {"02:00:00:00:00:02": 0.0}},
                                 sent=4, lost=lost)
    monkeypatch.setattr(sweep, "sweep", fake_sweep)
    assert cli.main(["--config", str(conf), "scan", "10.0.0.0/30", "--json"]) == code
    out, err = capsys.readouterr()
    assert json.loads(out)["frames_lost"] == lost
    assert ("dropped 12 received frames on vmbr0" in err and err.startswith("phoenix-hook: WARNING:")) == bool(lost)

"""acd.py: RFC 5227 schedule, judge and the ProbeRun state machine (time is a parameter)."""
from __future__ import annotations

import pytest

from phoenix_hook.net import acd, arp

BR = "02:00:00:00:00:01"        # bridge MAC (ours)
HOST2 = "02:00:00:00:00:02"     # another interface of this host
GUEST = "bc:24:11:5e:2a:01"
SQUAT = "16:0d:a0:c0:b9:1b"
OTHER = "00:1b:21:00:00:07"
IP = "10.0.0.151"


def cand(key="net0", ip=IP, iface="vmbr0", vlan=None, tagged=False, guest_mac=GUEST, running=False):
    return acd.Candidate(key=key, ip=ip, iface=iface, src_mac=BR, vlan=vlan, tagged=tagged,
                         guest_mac=guest_mac, guest_running=running)


def pkt(frame, aux=None):
    p = arp.parse(frame, aux)
    assert p is not None
    return p


def reply(mac, ip=IP, vlan=None):
    return pkt(arp.build_reply(mac, ip, BR, "0.0.0.0", vlan=vlan))


# -- schedules -------------------------------------------------------------

@pytest.mark.parametrize("ms", [200, 900, 1000, 4500])
def test_schedule_scaled_like_n_acd(ms):
    t = ms / 1000
    s = acd.schedule_for(ms)
    assert s.probe_num == 3
    assert s.probe_wait == pytest.approx(t / 9)
    assert s.probe_min == pytest.approx(t / 9)
    assert s.probe_max == pytest.approx(t / 3)
    assert s.announce_wait == pytest.approx(2 * t / 9)
    assert s.longest == pytest.approx(t)


def test_schedule_rfc5227_constants():
    s = acd.schedule_for("rfc5227")
    assert (s.probe_wait, s.probe_num, s.probe_min, s.probe_max, s.announce_wait) == (1, 3, 1, 2, 2)
    assert s.longest == pytest.approx(7.0)        # 1 + 2*2 + 2


def test_schedule_accepts_string_milliseconds():
    assert acd.schedule_for("900") == acd.schedule_for(900)


@pytest.mark.parametrize("ms", [200, 1000])
def test_send_offsets_window_bounds(ms):
    t = ms / 1000
    s = acd.schedule_for(ms)
    lo, lo_end = acd.send_offsets(s, rand=lambda: 0.0)
    hi, hi_end = acd.send_offsets(s, rand=lambda: 1.0)
    assert lo == pytest.approx([0, t / 9, 2 * t / 9])
    assert lo_end == pytest.approx(4 * t / 9)
    assert hi == pytest.approx([t / 9, t / 9 + t / 3, t / 9 + 2 * t / 3])
    assert hi_end == pytest.approx(t)
    mid, mid_end = acd.send_offsets(s, rand=lambda: 0.5)
    assert 4 * t / 9 < mid_end < t
    assert all(b - a >= s.probe_min - 1e-12 for a, b in zip(mid, mid[1:]))
    assert len(mid) == s.probe_num


def test_send_offsets_rfc_full():
    offs, end = acd.send_offsets(acd.RFC5227, rand=lambda: 1.0)
    assert offs == pytest.approx([1, 3, 5]) and end == pytest.approx(7)


# -- judge -------------------------------------------------------------------

def test_reply_from_other_mac_is_conflict():
    c = acd.judge(reply(SQUAT), "vmbr0", cand(), frozenset())
    assert (c.kind, c.mac, c.ip, c.key, c.vlan) == ("reply", SQUAT, IP, "net0", None)
    assert c.detail == "answered our probe"


@pytest.mark.parametrize("mac", [BR, HOST2])
def test_own_macs_ignored(mac):
    assert acd.judge(reply(mac), "vmbr0", cand(), frozenset({HOST2})) is None


def test_other_vlan_ignored():
    c = cand(vlan=20, tagged=True)
    assert acd.judge(reply(SQUAT, vlan=30), "vmbr0", c, frozenset()) is None
    assert acd.judge(reply(SQUAT), "vmbr0", c, frozenset()) is None          # untagged
    assert acd.judge(reply(SQUAT, vlan=20), "vmbr0", c, frozenset()).kind == "reply"
    # the tag may arrive as PACKET_AUXDATA instead of in the frame
    aux = pkt(arp.build_reply(SQUAT, IP, BR, "0.0.0.0"), aux=20)
    assert acd.judge(aux, "vmbr0", c, frozenset()).vlan == 20


def test_untagged_candidate_ignores_tagged_frames():
    assert acd.judge(reply(SQUAT, vlan=20), "vmbr0", cand(), frozenset()) is None


def test_vmbrXvN_candidate_expects_untagged():
    c = cand(iface="vmbr0v20", vlan=20, tagged=False)
    assert c.rx_vlan is None
    assert acd.judge(reply(SQUAT), "vmbr0v20", c, frozenset()).vlan == 20
    assert acd.judge(reply(SQUAT, vlan=20), "vmbr0v20", c, frozenset()) is None


def test_other_iface_ignored():
    assert acd.judge(reply(SQUAT), "vmbr1", cand(), frozenset()) is None


def test_other_address_ignored():
    assert acd.judge(reply(SQUAT, ip="10.0.0.152"), "vmbr0", cand(), frozenset()) is None
    # someone merely asking for our candidate is not a conflict
    who_has = pkt(arp.build_request(SQUAT, "10.0.0.9", IP))
    assert acd.judge(who_has, "vmbr0", cand(), frozenset()) is None


def test_probe_from_another_host_same_target():
    c = acd.judge(pkt(arp.build_probe(SQUAT, IP)), "vmbr0", cand(), frozenset())
    assert c.kind == "probe" and c.mac == SQUAT
    assert acd.judge(pkt(arp.build_probe(SQUAT, "10.0.0.152")), "vmbr0", cand(), frozenset()) is None
    assert acd.judge(pkt(arp.build_probe(BR, IP)), "vmbr0", cand(), frozenset()) is None   # our own


def test_gratuitous_request_is_announcement():
    c = acd.judge(pkt(arp.build_announcement(SQUAT, IP)), "vmbr0", cand(), frozenset())
    assert c.kind == "announcement"


def test_request_from_the_address():
    c = acd.judge(pkt(arp.build_request(SQUAT, IP, "10.0.0.1")), "vmbr0", cand(), frozenset())
    assert c.kind == "request"


def test_guest_own_mac_is_same_mac_unless_running():
    assert acd.judge(reply(GUEST), "vmbr0", cand(), frozenset()).kind == "same-mac"
    assert acd.judge(reply(GUEST), "vmbr0", cand(running=True), frozenset()) is None
    own_probe = pkt(arp.build_probe(GUEST, IP))
    assert acd.judge(own_probe, "vmbr0", cand(running=True), frozenset()) is None
    # a running guest does not excuse a different MAC
    assert acd.judge(reply(SQUAT), "vmbr0", cand(running=True), frozenset()).kind == "reply"


def test_candidate_probe_frame_tagging():
    assert arp.parse(cand(vlan=20, tagged=True).probe_frame()).vlan == 20
    assert arp.parse(cand(vlan=20, tagged=False).probe_frame()).vlan is None


# -- ProbeRun ----------------------------------------------------------------

T0 = 1000.0


def run_of(cands, ms=900, stop_on_first=False, rand=0.5, own=frozenset()):
    r = acd.ProbeRun(list(cands), acd.schedule_for(ms), own_macs=own, stop_on_first=stop_on_first,
                     rand=lambda: rand)
    r.start(T0)
    return r


def test_probe_run_sends_three_probes_per_candidate_at_offsets():
    a, b = cand("net0"), cand("net1", ip="10.0.0.152")
    r = run_of([a, b])
    offsets, end = acd.send_offsets(acd.schedule_for(900), rand=lambda: 0.5)
    assert r.due(T0 + offsets[0] - 1e-6) == []
    sent_at = []
    for off in offsets:
        assert r.wakeup() == pytest.approx(T0 + off)
        frames = r.due(T0 + off)
        assert [i for i, _ in frames] == ["vmbr0", "vmbr0"]
        assert {arp.parse(f).target_ip for _, f in frames} == {IP, "10.0.0.152"}
        assert all(arp.parse(f).is_probe for _, f in frames)
        assert r.due(T0 + off) == []                 # nothing twice
        sent_at.append(off)
    assert r.sent == {"net0": 3, "net1": 3}
    assert r.wakeup() == pytest.approx(T0 + end) and r.window == pytest.approx(end)
    assert not r.done(T0 + end - 1e-6)
    assert r.done(T0 + end)


def test_probe_run_late_clock_catches_up():
    r = run_of([cand()])
    assert len(r.due(T0 + 10)) == 3 and r.sent["net0"] == 3


def test_probe_run_stops_probing_candidate_after_conflict():
    a, b = cand("net0"), cand("net1", ip="10.0.0.152")
    r = run_of([a, b])
    offs, _ = acd.send_offsets(acd.schedule_for(900), rand=lambda: 0.5)
    r.due(T0 + offs[0])
    found = r.feed("vmbr0", reply(SQUAT), T0 + offs[0] + 0.01)
    assert [(c.key, c.kind) for c in found] == [("net0", "reply")]
    assert found[0].at == pytest.approx(offs[0] + 0.01)
    assert not r.done(T0 + offs[0] + 0.01)            # not stop_on_first: net1 still open
    frames = r.due(T0 + offs[1])
    assert [arp.parse(f).target_ip for _, f in frames] == ["10.0.0.152"]
    assert r.sent == {"net0": 1, "net1": 2}


def test_probe_run_done_when_every_candidate_has_a_conflict():
    r = run_of([cand("net0"), cand("net1", ip="10.0.0.152")])
    r.feed("vmbr0", reply(SQUAT), T0)
    assert not r.done(T0)
    r.feed("vmbr0", reply(OTHER, ip="10.0.0.152"), T0)
    assert r.done(T0)


def test_probe_run_stop_on_first():
    r = run_of([cand("net0"), cand("net1", ip="10.0.0.152")], stop_on_first=True)
    r.due(T0 + 1)
    assert not r.done(T0 + 0.05)
    r.feed("vmbr0", reply(OTHER, ip="10.0.0.152"), T0 + 0.05)
    assert r.done(T0 + 0.05)
    assert list(r.conflicts) == ["net1"]


def test_probe_run_records_every_mac_once():
    r = run_of([cand()])
    r.feed("vmbr0", reply(SQUAT), T0 + 0.1)
    r.feed("vmbr0", reply(SQUAT), T0 + 0.2)           # same MAC again: not a new conflict
    new = r.feed("vmbr0", pkt(arp.build_announcement(OTHER, IP)), T0 + 0.3)
    assert [(c.mac, c.kind) for c in new] == [(OTHER, "announcement")]
    assert [(c.mac, c.kind) for c in r.conflicts["net0"]] == [(SQUAT, "reply"), (OTHER, "announcement")]


def test_probe_run_ignores_own_and_unrelated():
    r = run_of([cand()], own=frozenset({HOST2}))
    assert r.feed("vmbr0", reply(HOST2), T0) == []
    assert r.feed("vmbr1", reply(SQUAT), T0) == []
    assert r.conflicts == {}
    offs, end = acd.send_offsets(acd.schedule_for(900), rand=lambda: 0.5)
    for o in offs:
        r.due(T0 + o)
    assert r.done(T0 + end) and r.sent == {"net0": 3}


def test_probe_run_without_candidates_ends_at_once():
    r = run_of([])
    assert r.due(T0 + 5) == [] and r.done(T0)


@pytest.mark.parametrize("t0", [0.0, 1000.0, 123456.789, 9.87654321e6])
@pytest.mark.parametrize("rand", [0.0, 0.37, 0.5, 1.0])
def test_probe_run_driven_by_its_own_wakeup_never_spins(t0, rand):
    """A simulated clock that jumps to wakeup() must make progress on every step."""
    r = acd.ProbeRun([cand()], acd.schedule_for(900), stop_on_first=True, rand=lambda: rand)
    r.start(t0)
    now, steps, sent = t0, 0, 0
    while not r.done(now):
        sent += len(r.due(now))
        now = r.wakeup()
        steps += 1
        assert steps <= 5, "no progress at the time wakeup() asked for"
    assert sent == 3 and now == pytest.approx(t0 + r.window)


def test_a_stalled_process_still_sends_every_probe_and_listens_after_the_last():
    """A probe loop that wakes up long after its window (a starved CPU) must not call the address
    free on fewer probes, or with no listening after the last one."""
    cand = acd.Candidate(key="net0", ip="10.0.0.151", iface="vmbr0", src_mac="02:aa:00:00:00:01")
    s = acd.schedule_for(900)
    run = acd.ProbeRun([cand], s, rand=lambda: 0.5)
    run.start(100.0)
    assert len(run.due(100.0 + run._offsets[0])) == 1
    stall = 100.0 + run.window + 5.0                   # woke 5 s after the planned window closed
    assert not run.done(stall)                          # two probes still to send
    assert len(run.due(stall)) == 2 and run.sent["net0"] == 3
    assert not run.done(stall + s.announce_wait - 0.001)
    assert run.done(stall + s.announce_wait + 0.001)
    assert run.window == pytest.approx(stall + s.announce_wait - 100.0)

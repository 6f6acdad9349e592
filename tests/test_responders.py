"""checks/responders.py: a MAC answering for many addresses, or outside the bridge's
subnets, is named as a suspicious responder. Pure: no files, no wire."""
from __future__ import annotations

import ipaddress
import json

from hypothesis import given, strategies as st

from phoenix_hook.checks import responders
from phoenix_hook.checks.report import Finding, GuestResult, NicResult

LIAR = "16:0d:a0:c0:b9:1b"
HOLDER = "52:54:00:12:34:56"


def result(vmid, ip, mac, bridge="vmbr0", source="arp"):
    g = GuestResult(vmid=vmid, type="lxc", name="ct")
    g.nics.append(NicResult(nic="net0", ip=ip, bridge=bridge, vlan=None, verdict="conflict",
                            conflicts=[Finding(source=source, detail="x", mac=mac)]))
    return g


def record(ip, mac, source="arp"):
    return json.dumps({"vmid": 1, "report": {"nics": [{"ip": ip, "conflicts": [
        {"source": source, "mac": mac, "vendor": None, "detail": "x"}]}]}})


NETS = {"vmbr0": [ipaddress.ip_network("10.0.0.0/24")]}


def test_one_address_claimed_is_an_ordinary_conflict():
    assert responders.notes_for(result(951, "10.0.0.151", HOLDER), [], NETS) == []


def test_a_mac_with_many_addresses_in_the_history_is_named():
    history = responders.parse_history([record("10.0.0.152", LIAR), record("10.0.0.153", LIAR.upper()),
                                        record("10.0.0.154", HOLDER)])
    notes = responders.notes_for(result(951, "10.0.0.151", LIAR), history, NETS)
    assert len(notes) == 1
    assert notes[0].startswith(f"suspicious responder: {LIAR} has claimed 3 different addresses "
                               f"(10.0.0.151, 10.0.0.152, 10.0.0.153)")
    assert "mode = warn in [guest:951]" in notes[0]


def test_the_same_address_again_is_not_many():
    history = responders.parse_history([record("10.0.0.151", LIAR)] * 10)
    assert responders.notes_for(result(951, "10.0.0.151", LIAR), history, NETS) == []


def test_an_answer_outside_the_bridges_subnets_is_named():
    notes = responders.notes_for(result(951, "192.168.7.5", LIAR), [], NETS)
    assert notes and "outside every subnet of vmbr0 (10.0.0.0/24)" in notes[0]
    # a bridge without addresses says nothing about where its guests live
    assert responders.notes_for(result(951, "192.168.7.5", LIAR), [], {"vmbr0": []}) == []


def test_host_and_config_findings_are_not_responders():
    g = result(951, "10.0.0.151", None, source="host")
    assert responders.notes_for(g, [(LIAR, "10.0.0.9"), (LIAR, "10.0.0.8")], NETS) == []


def test_ipv6_answers_count_too():
    history = [(LIAR, "fd00::2"), (LIAR, "fd00::3")]
    notes = responders.notes_for(result(951, "fd00::151", LIAR, source="ndp"), history,
                                 {"vmbr0": [ipaddress.ip_network("fd00::/64")]})
    assert notes and "has claimed 3 different addresses (fd00::2, fd00::3, fd00::151)" in notes[0]


@given(st.lists(st.one_of(st.text(max_size=80), st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
                          st.builds(json.dumps, st.recursive(st.none() | st.integers() | st.text(max_size=5),
                                                             lambda c: st.lists(c) | st.dictionaries(st.text(max_size=8), c))))))
def test_history_lines_never_raise(lines):
    for mac, ip in responders.parse_history(lines):
        assert isinstance(mac, str) and isinstance(ip, str)


@given(st.lists(st.one_of(
    st.builds(record, st.sampled_from(["10.0.0.151", "fd00::151"]), st.sampled_from([LIAR, HOLDER]),
              st.sampled_from(["arp", "ndp", "host", "config"])),
    st.just(json.dumps({"vmid": 2, "verdict": "clear", "report": {"nics": [{"ip": "10.0.0.9", "conflicts": []}]}})),
    st.text(max_size=40)), max_size=12))
def test_history_skips_lines_without_a_wire_conflict_unparsed_and_loses_nothing(lines):
    """parse_history only parses lines naming "arp" or "ndp" (the decision log is read on every
    refused start): the pairs are exactly those of parsing every line."""
    every = []
    for line in lines:
        try:
            every += responders.claims_in(json.loads(line))
        except ValueError:
            pass
    assert responders.parse_history(lines) == every

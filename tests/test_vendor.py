"""vendor reads the IEEE registry file netaddr reads; names must be right with any netaddr.

Debian 12's python3-netaddr 0.8 pairs an oui.idx from 2021 with ieee-data's
newer oui.txt, so netaddr's own lookup names 3C:52:82 (Hewlett Packard)
"White". These tests run under pip's newest netaddr and, in CI, a second
time under Debian's python3 with Debian's netaddr (dev.sh).
"""
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_hook.net import vendor

import netaddr  # noqa: E402  (a dependency of phoenix-hook: its absence is a failure, not a skip)

# The registry's own words, as every netaddr version since 0.7 ships or links them.
KNOWN = {
    "3c:52:82:11:22:33": "Hewlett Packard",
    "00:0d:b9:11:22:33": "PC Engines GmbH",
    "00:1b:21:3a:4b:5c": "Intel Corporate",
}


def _registry() -> dict[str, str]:
    """OUI -> organisation of its first "(hex)" record, parsed here independently."""
    txt, _ = next(vendor._oui_files())
    orgs: dict[str, str] = {}
    for line in Path(txt).read_bytes().decode("utf-8", "replace").splitlines():
        m = re.match(r"([0-9A-F]{2}-[0-9A-F]{2}-[0-9A-F]{2})\s+\(hex\)(.*)", line)
        if m:
            orgs.setdefault(m.group(1), m.group(2).strip())
    return orgs


def _mac(oui: str, tail: str = "12:34:56") -> str:
    return oui.replace("-", ":").lower() + ":" + tail


def test_the_registry_file_is_the_imported_netaddrs():
    import os
    txt, idx = next(vendor._oui_files())
    assert txt == os.path.join(os.path.dirname(netaddr.__file__), "eui", "oui.txt")
    assert idx == os.path.join(os.path.dirname(netaddr.__file__), "eui", "oui.idx")


def test_names_from_the_issue_are_right():
    assert {mac: vendor.vendor(mac) for mac in KNOWN} == KNOWN
    assert vendor.vendor("3C-52-82-11-22-33") == "Hewlett Packard"


def test_lookup_agrees_with_the_registry_file_on_registered_and_random_ouis():
    orgs = _registry()
    assert len(orgs) > 20000
    rng = random.Random(5227)
    macs = [_mac(o) for o in rng.sample(sorted(orgs), 300)]
    macs += ["%02x:%02x:%02x:00:00:01" % (rng.randrange(256) & 0xFC, rng.randrange(256), rng.randrange(256))
             for _ in range(300)]
    want = {m: orgs.get(m[:8].replace(":", "-").upper()) or None for m in macs}
    got = {m: vendor.vendor(m) for m in macs}
    assert {m: (got[m], want[m]) for m in macs if got[m] != want[m]} == {}
    assert sum(v is not None for v in got.values()) >= 300        # the sample did hit real vendors


def test_netaddrs_index_is_used_only_where_it_points_at_the_right_record(tmp_path, monkeypatch):
    """A stale oui.idx (Debian's) sends offsets to other records: those entries are searched instead."""
    records = [("3C-52-82", "Hewlett Packard"), ("00-0D-B9", "PC Engines GmbH"), ("AA-BB-C0", "White")]
    text = b"OUI/MA-L\t\tOrganization\r\n\r\n"
    offsets = {}
    for oui, org in records:
        offsets[oui] = len(text)
        text += f"{oui}   (hex)\t\t{org}\r\n{oui.replace('-', '')}     (base 16)\t\t{org}\r\n\r\n".encode()
    (tmp_path / "oui.txt").write_bytes(text)

    def idx(pairs):
        (tmp_path / "oui.idx").write_text("".join(f"{int(o.replace('-', ''), 16)},{offsets[t]},60\n"
                                                  for o, t in pairs))
    monkeypatch.setattr(vendor, "_oui_files", lambda: iter([(str(tmp_path / "oui.txt"), str(tmp_path / "oui.idx"))]))
    monkeypatch.setattr(vendor, "_TEXT", {})
    idx([("3C-52-82", "AA-BB-C0"), ("00-0D-B9", "00-0D-B9")])         # one stale, one right
    assert vendor.vendor("3c:52:82:11:22:33") == "Hewlett Packard"
    assert vendor.vendor("00:0d:b9:11:22:33") == "PC Engines GmbH"
    assert vendor.vendor("ac:de:48:00:00:01") is None                 # in neither
    (tmp_path / "oui.idx").write_text("garbage\n")
    assert vendor.vendor("3c:52:82:11:22:33") == "Hewlett Packard"


def test_debian_ieee_data_is_read_without_netaddr(tmp_path, monkeypatch):
    (tmp_path / "oui.txt").write_bytes(b"\r\nF8-0D-AC   (hex)\t\tHP Inc\r\n")
    monkeypatch.setattr(vendor, "IEEE_DATA_OUI", str(tmp_path / "oui.txt"))
    monkeypatch.setattr(vendor, "_TEXT", {})
    import os
    import sys
    # No netaddr on the path at all (and none importable for the last-resort lookup).
    monkeypatch.setattr(sys, "path", [p for p in sys.path
                                      if not os.path.isfile(os.path.join(p or ".", "netaddr", "__init__.py"))])
    monkeypatch.setitem(sys.modules, "netaddr", None)
    assert vendor.vendor("f8:0d:ac:00:00:01") == "HP Inc"
    (tmp_path / "oui.txt").write_bytes(b"")                             # empty: unknown, no traceback
    monkeypatch.setattr(vendor, "_TEXT", {})
    assert vendor.vendor("f8:0d:ac:00:00:01") is None


def test_with_the_newest_netaddr_it_agrees_with_netaddr_itself():
    """Where netaddr's own index is consistent (pip's netaddr), both name the same organisation."""
    from netaddr.core import NotRegisteredError
    for mac in KNOWN:
        try:
            theirs = netaddr.EUI(mac).oui.registration().org.strip()
        except NotRegisteredError:
            theirs = None
        if theirs != KNOWN[mac]:
            assert netaddr.__version__.startswith("0."), (mac, theirs)   # only old netaddr gets it wrong
        else:
            assert vendor.vendor(mac) == theirs


def test_describe_names_vendor_or_says_why_not():
    assert vendor.describe("00:1b:21:3a:4b:5c") == ("Intel Corporate", "Intel Corporate")
    assert vendor.describe("16:0d:a0:c0:b9:1b") == (None, "vendor unknown, locally administered")
    assert vendor.describe("ac:ff:ff:00:00:01")[0] is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_vendor_or_none(text):
    v = vendor.vendor(text)
    assert v is None or (isinstance(v, str) and v)

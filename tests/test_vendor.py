"""vendor._from_index reads netaddr's own OUI files directly; it must agree with netaddr."""
import random

import pytest

from phoenix_hook.net import vendor

import netaddr  # a dependency of phoenix-hook: its absence is a failure, not a skip
from netaddr.core import NotRegisteredError  # noqa: E402
from netaddr.eui import ieee  # noqa: E402


def _reference(mac: str) -> str:
    try:
        return netaddr.EUI(mac).oui.registration().org.strip()
    except NotRegisteredError:
        return ""


def test_fast_lookup_agrees_with_netaddr_on_registered_and_random_ouis():
    rng = random.Random(5227)
    registered = rng.sample(sorted(ieee.OUI_INDEX), 300)
    macs = [f"{k >> 16:02x}:{(k >> 8) & 0xff:02x}:{k & 0xff:02x}:12:34:56" for k in registered]
    macs += ["%02x:%02x:%02x:00:00:01" % (rng.randrange(256) & 0xFC, rng.randrange(256), rng.randrange(256))
             for _ in range(300)]
    wrong = [(m, vendor._from_index(m), _reference(m)) for m in macs if vendor._from_index(m) != _reference(m)]
    assert wrong == []
    assert sum(bool(vendor._from_index(m)) for m in macs) >= 300      # the sample did hit real vendors


def test_describe_names_vendor_or_says_why_not():
    assert vendor.describe("00:1b:21:3a:4b:5c") == ("Intel Corporate", "Intel Corporate")
    assert vendor.describe("16:0d:a0:c0:b9:1b") == (None, "vendor unknown, locally administered")
    assert vendor.describe("ac:ff:ff:00:00:01")[0] is None

"""settings.py: the INI file, its defaults and its one-line errors."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from phoenix_hook import settings
from phoenix_hook.settings import Settings, SettingsError, load, parse

P = "/etc/phoenix-hook/phoenix-hook.conf"


def conf(body: str, section: str = "phoenix-hook") -> str:
    return f"[{section}]\n{body}\n"


def test_defaults():
    s = Settings()
    assert (s.mode, s.probe_timeout_ms, s.deadline_s, s.on_error) == ("enforce", 1000, 10.0, "allow")
    assert (s.pve_root, s.log_file) == ("/etc/pve", "/var/log/phoenix-hook/decisions.jsonl")
    assert s.node == os.uname().nodename.split(".")[0]
    assert s.ignore == () and s.dhcp_ranges == () and s.guests == {}
    assert s.for_guest(951) == ("enforce", 1000)


def test_empty_file_is_defaults():
    s = parse("", P)
    assert s.path == P and (s.mode, s.probe_timeout_ms, s.on_error) == ("enforce", 1000, "allow")


def test_every_key():
    s = parse(conf("""
mode = warn
probe_timeout_ms = 200
deadline_s = 2.5
on_error = refuse
pve_root = /tmp/pve
node = pve2
log_file = /tmp/decisions.jsonl
ignore = 10.0.0.254, 10.0.5.0/24 192.168.1.1
dhcp_ranges = 10.0.0.100-10.0.0.199, 10.0.1.10 - 10.0.1.20
"""), P)
    assert (s.mode, s.probe_timeout_ms, s.deadline_s, s.on_error) == ("warn", 200, 2.5, "refuse")
    assert (s.pve_root, s.node, s.log_file) == ("/tmp/pve", "pve2", "/tmp/decisions.jsonl")
    assert s.ignore == ("10.0.0.254", "10.0.5.0/24", "192.168.1.1")
    assert s.dhcp_ranges == (("10.0.0.100", "10.0.0.199"), ("10.0.1.10", "10.0.1.20"))


def test_dhcp_leases_files():
    s = parse(conf("dhcp_leases = /var/lib/misc/dnsmasq.leases, /var/lib/kea/kea-leases4.csv,"), P)
    assert s.dhcp_leases == ("/var/lib/misc/dnsmasq.leases", "/var/lib/kea/kea-leases4.csv")
    assert parse(conf("dhcp_leases ="), P).dhcp_leases == ()


def test_rfc5227_timeout_and_inline_comments():
    s = parse(conf("probe_timeout_ms = rfc5227   # the RFC's own 7 s\nmode = off ; no checks"), P)
    assert s.probe_timeout_ms == "rfc5227" and s.mode == "off"


def test_keys_are_case_insensitive():
    assert parse(conf("MODE = warn"), P).mode == "warn"


@pytest.mark.parametrize("key, value", [
    ("mode", "refuse"), ("mode", "Enforce"),
    ("on_error", "deny"),
    ("probe_timeout_ms", "10"), ("probe_timeout_ms", "60001"), ("probe_timeout_ms", "1s"),
    ("probe_timeout_ms", "-100"), ("probe_timeout_ms", "\u00b2\u00b2\u00b2"),
    ("deadline_s", "0.1"), ("deadline_s", "301"), ("deadline_s", "soon"), ("deadline_s", "nan"),
    ("pve_root", "etc/pve"), ("log_file", "decisions.jsonl"),
    ("node", "../pve1"), ("node", ".hidden"),
    ("ignore", "10.0.0.300"), ("ignore", "fd00::zz"),
    ("dhcp_ranges", "10.0.0.199-10.0.0.100"), ("dhcp_ranges", "10.0.0.100"), ("dhcp_ranges", "a-b"),
    ("dhcp_leases", "dnsmasq.leases"),
])
def test_invalid_value_is_one_line_naming_file_key_value(key, value):
    with pytest.raises(SettingsError) as e:
        parse(conf(f"{key} = {value}"), P)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(P + ":") and key in msg
    assert repr(value) in msg


def test_unknown_key():
    with pytest.raises(SettingsError) as e:
        parse(conf("probe_timeout = 200"), P)
    assert "unknown key 'probe_timeout'" in str(e.value) and P in str(e.value)
    assert "probe_timeout_ms" in str(e.value)        # says what is known


def test_not_an_ini_file():
    with pytest.raises(SettingsError) as e:
        parse("mode = warn\n", P)
    assert P in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SettingsError):
        parse("[phoenix-hook]\nmode = warn\n[phoenix-hook]\nmode = off\n", P)


def test_guest_overrides():
    s = parse(conf("mode = warn\nprobe_timeout_ms = 500") + "[guest:951]\nmode = enforce\n"
              "[guest:952]\nprobe_timeout_ms = rfc5227\n", P)
    assert s.for_guest(951) == ("enforce", 500)
    assert s.for_guest(952) == ("warn", "rfc5227")
    assert s.for_guest(953) == ("warn", 500)
    assert s.guests == {951: {"mode": "enforce"}, 952: {"probe_timeout_ms": "rfc5227"}}


@pytest.mark.parametrize("text, words", [
    ("[guest:abc]\nmode = warn\n", ["[guest:abc]", "numeric VMID"]),
    ("[guest:\u00b2]\nmode = warn\n", ["numeric VMID"]),
    ("[guest:]\nmode = warn\n", ["numeric VMID"]),
    ("[guest:951]\ndeadline_s = 3\n", ["'deadline_s'", "[guest:951]"]),
    ("[guest:951]\nmode = loud\n", ["[guest:951]", "'loud'"]),
])
def test_bad_guest_sections(text, words):
    with pytest.raises(SettingsError) as e:
        parse(text, P)
    for w in words:
        assert w in str(e.value)
    assert str(e.value).startswith(P)


def test_other_sections_kept_raw():
    s = parse("[api]\nhost = pve.example\n", P)
    assert s.sections == {"api": {"host": "pve.example"}}


def test_ignored_addresses_and_networks():
    s = parse(conf("ignore = 10.0.0.254 10.0.5.0/24"), P)
    assert s.ignored("10.0.0.254") and s.ignored("10.0.5.77")
    assert not s.ignored("10.0.0.253") and not s.ignored("10.0.6.1")
    assert not Settings().ignored("10.0.0.254")


def test_a_file_named_explicitly_must_exist(tmp_path):
    """--config /missing.conf is a typo to report, not a reason to run on defaults."""
    with pytest.raises(SettingsError) as e:
        load(str(tmp_path / "nope.conf"), environ={})
    assert "nope.conf: no such file (--config names it)" in str(e.value)


def test_empty_values_mean_the_default():
    """The commented template shows 'node =': pasting it must not break every start."""
    s = parse("[phoenix-hook]\nnode =\nignore =\nmode =\nlog_file =\n", "x.conf")
    d = Settings()
    assert (s.node, s.ignore, s.mode, s.log_file) == (d.node, (), "enforce", d.log_file)


def test_default_path_missing_means_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "settings_file", lambda environ: str(tmp_path / "absent.conf"))
    assert load(environ={}).path is None


def test_env_names_a_missing_file_is_an_error(tmp_path):
    missing = str(tmp_path / "missing.conf")
    with pytest.raises(SettingsError) as e:
        load(environ={"PHOENIX_HOOK_CONF": missing})
    assert missing in str(e.value) and "PHOENIX_HOOK_CONF" in str(e.value)


def test_env_names_an_existing_file(tmp_path):
    f = tmp_path / "ph.conf"
    f.write_text(conf("mode = warn"))
    s = load(environ={"PHOENIX_HOOK_CONF": str(f)})
    assert s.mode == "warn" and s.path == str(f)


def test_load_reports_file_errors_with_the_path(tmp_path):
    f = tmp_path / "ph.conf"
    f.write_text(conf("mode = loud"))
    with pytest.raises(SettingsError) as e:
        load(str(f), environ={})
    assert str(f) in str(e.value)
    f.write_bytes(b"[phoenix-hook]\nmode = \xff\xfe\n")
    with pytest.raises(SettingsError) as e:
        load(str(f), environ={})
    assert str(f) in str(e.value)


def test_unreadable_path_is_settings_error(tmp_path):
    with pytest.raises(SettingsError):
        load(str(tmp_path), environ={})          # a directory: IsADirectoryError


def test_ignore_takes_ipv4_and_ipv6_networks():
    s = parse("[phoenix-hook]\nignore = 10.0.0.0/28, fd00::/64, 192.168.1.5\n", "x.conf")
    assert s.ignored("10.0.0.3") and s.ignored("fd00::151") and s.ignored("192.168.1.5")
    assert not s.ignored("10.0.0.16") and not s.ignored("fd01::1")


@pytest.mark.parametrize("text,where", [
    ("[phoenix-hook]\nprobe_timeout_ms = 20000\n", "[phoenix-hook] probe_timeout_ms = 20000 can take 20 s"),
    ("[phoenix-hook]\ndeadline_s = 5\nprobe_timeout_ms = rfc5227\n", "probe_timeout_ms = rfc5227 can take 7 s"),
    ("[phoenix-hook]\ndeadline_s = 2\n[guest:951]\nprobe_timeout_ms = 3000\n", "[guest:951] probe_timeout_ms = 3000"),
])
def test_a_probe_window_longer_than_the_deadline_is_refused(text, where):
    """Otherwise every check would end unfinished and every guest start unchecked."""
    with pytest.raises(SettingsError) as e:
        parse(text, "x.conf")
    assert where in str(e.value) and "deadline_s" in str(e.value)
    parse("[phoenix-hook]\ndeadline_s = 10\nprobe_timeout_ms = rfc5227\n", "x.conf")   # 7 s < 10 s: fine


# -- the hookscript's reading: never raises, defaults for what it cannot read ----------
from phoenix_hook.settings import load_lenient  # noqa: E402


def lenient(text, path=P):
    problems = []
    return parse(text, path, problems), problems


@pytest.mark.parametrize("key, value", [("mode", "sometimes"), ("on_error", "deny"), ("deadline_s", "soon"),
                                        ("log_file", "decisions.jsonl"), ("node", "../x"), ("ignore", "10.0.0.300")])
def test_lenient_takes_the_default_for_a_bad_value_and_keeps_the_rest(key, value):
    s, problems = lenient(conf(f"{key} = {value}\nprobe_timeout_ms = 300\npve_root = /srv/pve"))
    assert getattr(s, key) == getattr(Settings(), key)
    assert (s.probe_timeout_ms, s.pve_root) == (300, "/srv/pve")
    assert len(problems) == 1 and repr(value) in problems[0] and problems[0].startswith(P)
    assert "; using the default (" in problems[0]


def test_lenient_names_every_mistake_once():
    text = (conf("mode = warn\nprobe_timout_ms = 200\non_error = deny") +
            "[guest:abc]\nmode = off\n[guest:951]\nmode = loud\ndeadline_s = 3\n[extra]\nx = 1\n")
    s, problems = lenient(text)
    assert s.mode == "warn" and s.on_error == "allow" and s.guests == {951: {}}
    assert len(problems) == 6, problems
    assert all("\n" not in p for p in problems)


def test_lenient_window_mistake_falls_back_to_both_defaults():
    s, problems = lenient(conf("probe_timeout_ms = 5000\ndeadline_s = 0.5") + "[guest:7]\nprobe_timeout_ms = 4000\n")
    assert (s.probe_timeout_ms, s.deadline_s, s.guests) == (1000, 10.0, {7: {}})
    assert "using the defaults probe_timeout_ms = 1000 and deadline_s = 10" in problems[0]


def test_lenient_duplicate_keys_use_the_last_and_bad_lines_are_skipped():
    s, problems = lenient(conf("mode = off\nmode = warn\nthis is not a key\non_error = refuse"))
    assert (s.mode, s.on_error) == ("warn", "refuse")
    assert any("already exists" in p and "using the last one" in p for p in problems), problems
    assert any("those lines are ignored" in p for p in problems), problems


def test_lenient_no_section_header_at_all_is_all_defaults():
    s, problems = lenient("mode = off\n")
    assert s.mode == "enforce" and "using the defaults for every setting" in problems[0]


@pytest.mark.parametrize("mode,owner,ok", [(0o644, 0, True), (0o600, 0, True), (0o664, 0, False),
                                           (0o646, 0, False), (0o644, 65534, False)])
def test_settings_file_others_can_write_is_refused(tmp_path, mode, owner, ok):
    if os.geteuid() != 0 and owner == 65534:
        pytest.skip("chown needs root")
    f = tmp_path / "ph.conf"
    f.write_text(conf("mode = off"))
    os.chmod(f, mode)
    if os.geteuid() == 0:
        os.chown(f, owner, 0)
    env = {"PHOENIX_HOOK_CONF": str(f)}
    s, problems = load_lenient(env)
    assert (s.mode == "off") == ok and (problems == []) == ok
    if not ok:
        assert "writable by group or others, or not owned by root" in problems[0]
        with pytest.raises(SettingsError):
            load(environ=env)                  # the commands: exit 2 with the same line


@given(st.text(max_size=300))
def test_lenient_never_raises(text):
    s, problems = lenient("[phoenix-hook]\n" + text)
    assert isinstance(s, Settings) and all(isinstance(p, str) for p in problems)


@given(st.lists(st.sampled_from(["[phoenix-hook]", "[guest:5]", "[api]", "pve_root = /srv/pve", "pve_root=/x/y # c",
                                 "pve_root = relative", "pve_root =", "PVE_ROOT = /upper", "mode = off",
                                 "pve_root = /a\n  /b", "junk line", "pve_root = /dup"]), max_size=8))
def test_the_hooks_quick_pve_root_agrees_with_the_settings(tmp_path_factory, lines):
    """paths.pve_root (the other phases' reading, without settings.py) finds what
    load_lenient finds; where load_lenient takes every default, so does it."""
    from phoenix_hook import paths
    f = tmp_path_factory.mktemp("q") / "ph.conf"
    f.write_text("\n".join(lines) + "\n")
    env = {"PHOENIX_HOOK_CONF": str(f)}
    assert paths.pve_root(env) == load_lenient(env)[0].pve_root


def test_the_hooks_quick_pve_root_refuses_a_file_others_can_write(tmp_path):
    from phoenix_hook import paths
    f = tmp_path / "ph.conf"
    f.write_text("[phoenix-hook]\npve_root = /srv/pve\n")
    assert paths.pve_root({"PHOENIX_HOOK_CONF": str(f)}) == "/srv/pve"
    os.chmod(f, 0o666)
    assert paths.pve_root({"PHOENIX_HOOK_CONF": str(f)}) == "/etc/pve"

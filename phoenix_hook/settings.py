"""The INI settings file: /etc/phoenix-hook/phoenix-hook.conf or $PHOENIX_HOOK_CONF.

A missing file means defaults. An invalid value is a SettingsError whose
message names the file, the key and the value, and says what is allowed.

The commands stop at the first mistake (exit 2). The hookscript must not:
a typo in the settings must never switch the guard off. `load_lenient`
reads what it can, takes the default for each thing it cannot, and returns
the mistakes as lines to show (the hook checks anyway and says so).

A settings file writable by group or others, or owned by anyone but root
(or the user running the command), is not read at all: whoever can write
it could turn checking off (`mode = off`) for every guest.
"""
from __future__ import annotations

import configparser
import ipaddress
import os
from phoenix_hook.records import dataclass, field

from phoenix_hook.paths import SETTINGS_ENV as ENV_VAR
from phoenix_hook.paths import settings_file

SECTION = "phoenix-hook"
MODES = ("enforce", "warn", "off")
ON_ERROR = ("allow", "refuse")
RFC5227 = "rfc5227"
KNOWN_KEYS = {"mode", "probe_timeout_ms", "deadline_s", "on_error", "pve_root", "node",
              "log_file", "ignore", "dhcp_ranges", "run_dir", "dhcp_leases", "announce"}
GUEST_KEYS = {"mode", "probe_timeout_ms"}
API_SECTION = "api"
WATCH_SECTION = "watch"


from phoenix_hook.errors import SettingsError  # noqa: E402,F401 (re-exported)


@dataclass(frozen=True)
class Settings:
    mode: str = "enforce"
    probe_timeout_ms: int | str = 1000      # int, or "rfc5227" for the RFC's full timings
    deadline_s: float = 10.0
    on_error: str = "allow"
    pve_root: str = "/etc/pve"
    node: str = field(default_factory=lambda: os.uname().nodename.split(".")[0])
    log_file: str = "/var/log/phoenix-hook/decisions.jsonl"
    run_dir: str = "/run/phoenix-hook"       # node-local claims of starting guests (claims.py)
    ignore: tuple[str, ...] = ()             # addresses / networks never probed
    dhcp_ranges: tuple[tuple[str, str], ...] = ()
    dhcp_leases: tuple[str, ...] = ()        # lease files (dnsmasq, ISC dhcpd, Kea memfile)
    guests: dict = field(default_factory=dict)   # vmid -> {"mode": .., "probe_timeout_ms": ..}
    path: str | None = None                  # the file these came from, None if defaults
    sections: dict = field(default_factory=dict)  # other sections, raw, for later commands
    api: dict = field(default_factory=dict)  # [api], raw strings (pveapi.check_api); {} when absent
    announce: bool = True                    # post-start: RFC 5227 2.3 announcements / unsolicited NAs
    watch: "WatchSettings" = field(default_factory=lambda: WatchSettings())   # [watch]

    def for_guest(self, vmid: int) -> tuple[str, int | str]:
        """(mode, probe_timeout_ms) for one guest: [guest:VMID] overrides the defaults."""
        o = self.guests.get(vmid, {})
        return o.get("mode", self.mode), o.get("probe_timeout_ms", self.probe_timeout_ms)

    def ignored(self, address: str) -> bool:
        """Is this IPv4 or IPv6 address in the ignore list?"""
        a = ipaddress.ip_address(address)
        return any(a in net for net in (ipaddress.ip_network(x, strict=False) for x in self.ignore)
                   if net.version == a.version)


def load(path: str | None = None, environ=os.environ) -> Settings:
    """Read the settings file; defaults when it does not exist."""
    text, path = _read(path, environ)
    if text is None:
        return Settings(path=None)
    return parse(text, path)


def load_lenient(environ=os.environ) -> tuple[Settings, list[str]]:
    """(settings, mistakes) for the hookscript: never raises for what the file says.

    Each mistake is one line naming the file, the key and what is used instead.
    """
    problems: list[str] = []
    try:
        text, path = _read(None, environ)
    except SettingsError as exc:
        return Settings(path=None), [f"{exc}; using the defaults for every setting"]
    if text is None:
        return Settings(path=None), []
    return parse(text, path, problems), problems


def _read(path, environ) -> tuple[str | None, str]:
    """(text, path) of the settings file; (None, path) when the default file is absent."""
    explicit = path
    path = path or settings_file(environ)
    try:
        with open(path, encoding="utf-8") as f:
            _safe(path, os.fstat(f.fileno()))
            text = f.read()
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"{path}: no such file (--config names it); check the path") from None
        if environ.get(ENV_VAR) and path == environ.get(ENV_VAR):
            raise SettingsError(f"{path}: no such file ({ENV_VAR} names it); "
                                f"create it or unset {ENV_VAR}") from None
        return None, path
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read settings ({exc}); fix its permissions or content") from None
    return text, path


def _safe(path: str, st) -> None:
    """Refuse a settings file others could have written (module docstring)."""
    import stat
    owners = {0, os.geteuid()}
    if st.st_uid not in owners or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SettingsError(f"{path}: not used: it is writable by group or others, or not owned by root "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}); "
                            f"chown root {path}; chmod 644 {path}")


def parse(text: str, path: str = "<settings>", problems: list | None = None) -> Settings:
    """Settings from INI text. problems None: the first mistake raises SettingsError;
    a list: each mistake is appended (with what is used instead) and reading goes on."""
    def mistake(msg: str, instead: str) -> None:
        if problems is None:
            raise SettingsError(msg)
        problems.append(f"{msg}; {instead}")

    def value(section, key, raw, default_words):
        try:
            return _value(path, section, key, raw)
        except SettingsError as exc:
            mistake(str(exc), f"using {default_words}")
            return _NOPE

    # No DEFAULT section magic: configparser would copy its keys into every
    # section, and a [DEFAULT] key would then be "not allowed in [guest:5]".
    def read(strict: bool):
        cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"),
                                       default_section="\0no-default", strict=strict)
        try:
            cp.read_string(text, source=path)
        except configparser.MissingSectionHeaderError as exc:
            return None, exc, "using the defaults for every setting"
        except configparser.ParsingError as exc:
            # configparser has read every line it could before it complains
            return cp, exc, "those lines are ignored"
        except (configparser.DuplicateOptionError, configparser.DuplicateSectionError) as exc:
            return None, exc, "using the last one"
        except configparser.Error as exc:
            return None, exc, "using the defaults for every setting"
        return cp, None, None

    cp, exc, instead = read(strict=True)
    if instead == "using the last one":
        mistake(f"{path}: not a valid INI file ({_first(exc)}); see the README 'Settings' section", instead)
        cp, exc, instead = read(strict=False)
    if exc is not None:
        mistake(f"{path}: not a valid INI file ({_first(exc)}); see the README 'Settings' section", instead)
        if cp is None:
            return Settings(path=path)
    kw: dict = {"path": path}
    if cp.has_section(SECTION):
        sec = cp[SECTION]
        for key in sec:
            if key not in KNOWN_KEYS:
                mistake(f"{path}: unknown key '{key}' in [{SECTION}]; "
                        f"known keys: {', '.join(sorted(KNOWN_KEYS))}", "ignored")
        for key, raw in sec.items():
            if key in KNOWN_KEYS and raw.strip():   # "node =" as in the commented template: the default
                v = value(SECTION, key, raw, f"the default ({_default_words(key)})")
                if v is not _NOPE:
                    kw[key] = v
    guests = {}
    sections = {}
    for name in cp.sections():
        if name == SECTION:
            continue
        if name.startswith("guest:"):
            vmid = name[6:]
            if not (vmid.isascii() and vmid.isdigit()):   # '²'.isdigit() is True, int() rejects it
                mistake(f"{path}: section [{name}] must be [guest:VMID] with a numeric VMID", "ignored")
                continue
            o = {}
            for key, raw in cp[name].items():
                if key not in GUEST_KEYS:
                    mistake(f"{path}: key '{key}' is not allowed in [{name}]; "
                            f"allowed: {', '.join(sorted(GUEST_KEYS))}", "ignored")
                    continue
                v = value(name, key, raw, f"the [{SECTION}] value")
                if v is not _NOPE:
                    o[key] = v
            guests[int(vmid)] = o
        elif name == API_SECTION:
            sections[name] = dict(cp[name].items())
        elif name == WATCH_SECTION:
            kw["watch"] = _watch(path, cp[name], mistake)
        else:
            mistake(f"{path}: unknown section [{name}]; sections are [{SECTION}], "
                    f"[guest:VMID], [{API_SECTION}] and [{WATCH_SECTION}]", "ignored")
    if API_SECTION in sections:
        # Raw: [api] is checked where the API is used (pveapi.check_api), so a
        # bad value there never touches the hookscript, which reads files only.
        kw["api"] = dict(sections[API_SECTION])
    out = Settings(guests=guests, sections=sections, **kw)
    try:
        _window_fits(out, path)
    except SettingsError as exc:
        mistake(str(exc), f"using the defaults probe_timeout_ms = {Settings.probe_timeout_ms} and "
                f"deadline_s = {Settings.deadline_s:g} instead")
        kw.pop("probe_timeout_ms", None)
        kw.pop("deadline_s", None)
        guests = {vmid: {k: v for k, v in o.items() if k != "probe_timeout_ms"} for vmid, o in guests.items()}
        out = Settings(guests=guests, sections=sections, **kw)
    return out


_NOPE = object()


def _first(exc) -> str:
    return str(exc).splitlines()[0]


def _default_words(key: str) -> str:
    if key == "node":
        return "this host's name"
    v = getattr(Settings, key, None)
    if isinstance(v, tuple):
        return "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _window_fits(s: Settings, path: str) -> None:
    """A probe window at least as long as the deadline would end every check unfinished
    (and start every guest unchecked): say so when the settings are read."""
    for where, timeout in [(SECTION, s.probe_timeout_ms)] + [
            (f"guest:{vmid}", o["probe_timeout_ms"]) for vmid, o in s.guests.items() if "probe_timeout_ms" in o]:
        longest_s = 7.0 if timeout == RFC5227 else int(timeout) / 1000   # RFC 5227: 1 + 2 + 2 + 2 s
        if longest_s >= s.deadline_s:
            raise SettingsError(f"{path}: [{where}] probe_timeout_ms = {timeout} can take {longest_s:g} s, "
                                f"not less than deadline_s = {s.deadline_s:g}; raise deadline_s or "
                                f"lower probe_timeout_ms")


def _bad(path, section, key, value, allowed) -> SettingsError:
    return SettingsError(f"{path}: [{section}] {key} = {value!r} is not valid; use {allowed}")


def _value(path, section, key, value):
    v = value.strip()
    if key == "mode":
        if v not in MODES:
            raise _bad(path, section, key, v, " | ".join(MODES))
        return v
    if key == "on_error":
        if v not in ON_ERROR:
            raise _bad(path, section, key, v, " | ".join(ON_ERROR))
        return v
    if key == "probe_timeout_ms":
        if v == RFC5227:
            return v
        if not (v.isascii() and v.isdigit()) or not 50 <= int(v) <= 60000:
            raise _bad(path, section, key, v, "a whole number of milliseconds from 50 to 60000, or rfc5227")
        return int(v)
    if key == "deadline_s":
        try:
            f = float(v)
        except ValueError:
            f = -1
        if not 0.5 <= f <= 300:
            raise _bad(path, section, key, v, "seconds from 0.5 to 300")
        return f
    if key in ("pve_root", "log_file", "run_dir"):
        if not v.startswith("/"):
            raise _bad(path, section, key, v, "an absolute path")
        return v
    if key == "node":
        if not v or "/" in v or v.startswith("."):
            raise _bad(path, section, key, v, "this node's name as in /etc/pve/nodes/")
        return v
    if key == "ignore":
        items = tuple(x for x in v.replace(",", " ").split() if x)
        for x in items:
            try:
                ipaddress.ip_network(x, strict=False)
            except ValueError:
                raise _bad(path, section, key, x, "IPv4/IPv6 addresses or networks, comma-separated") from None
        return items
    if key == "dhcp_ranges":
        return _ranges(path, section, key, v)
    if key == "dhcp_leases":
        files = tuple(x.strip() for x in v.split(",") if x.strip())
        for x in files:
            if not x.startswith("/"):
                raise _bad(path, section, key, x, "absolute paths of lease files, comma-separated")
        return files
    if key == "announce":
        return _bool(path, section, key, v)
    return v


def _bool(path, section, key, v) -> bool:
    if v.lower() in ("true", "yes", "on", "1"):
        return True
    if v.lower() in ("false", "no", "off", "0"):
        return False
    raise _bad(path, section, key, v, "true or false")


def _ranges(path, section, key, v):
    out = []
    for item in (x.strip() for x in v.split(",")):
        if not item:
            continue
        lo, sep, hi = item.partition("-")
        try:
            a, b = ipaddress.IPv4Address(lo.strip()), ipaddress.IPv4Address(hi.strip())
            if not sep or a > b:
                raise ValueError
        except ValueError:
            raise _bad(path, section, key, item, "ranges like 10.0.0.100-10.0.0.199, comma-separated") from None
        out.append((str(a), str(b)))
    return tuple(out)


# -- [watch]: `phoenix-hook watch` (README "After the start: phoenix-hook watch") ------------------------------
NOTIFY = ("auto", "pve", "off")


@dataclass(frozen=True)
class WatchSettings:
    log_file: str = "/var/log/phoenix-hook/watch.jsonl"   # one JSON line per event
    reload_s: float = 10.0            # re-read changed guest configs this often (and on SIGHUP)
    verify_s: float = 60.0            # re-probe a conflicting MAC this often; silent: resolved
    alert_interval_s: float = 3600.0  # one alert per (address, MAC) in this long
    max_alerts_per_minute: int = 10   # in all; one summary line for the rest
    notify: str = "auto"              # PVE notifications: auto | pve | off
    webhook_url: str = ""             # JSON POST of each event; "" = off
    webhook_timeout_s: float = 5.0
    metrics_file: str = ""            # Prometheus textfile; "" = off
    ignore_macs: tuple[str, ...] = () # MACs never reported (VRRP, proxy ARP, bonding)


WATCH_KEYS = {"log_file", "reload_s", "verify_s", "alert_interval_s", "max_alerts_per_minute", "notify",
              "webhook_url", "webhook_timeout_s", "metrics_file", "ignore_macs"}
# (low, high) for the numeric keys
_WATCH_RANGES = {"reload_s": (1, 3600), "verify_s": (1, 86400), "alert_interval_s": (0, 7 * 86400),
                 "webhook_timeout_s": (0.5, 60)}


def _watch(path, sec, mistake) -> WatchSettings:
    """[watch]; each mistake goes to mistake(msg, instead) (raises for the commands), keeping
    that key's default: the hookscript reads this file too and must never stop for it."""
    kw: dict = {}
    for key, raw in sec.items():
        if key not in WATCH_KEYS:
            mistake(f"{path}: unknown key '{key}' in [{WATCH_SECTION}]; "
                    f"known keys: {', '.join(sorted(WATCH_KEYS))}", "ignored")
            continue
        try:
            kw[key] = _watch_value(path, key, raw.strip())
        except SettingsError as exc:
            mistake(str(exc), f"using the default ({getattr(WatchSettings, key)!r})")
    return WatchSettings(**kw)


def _watch_value(path, key, v):
    where = WATCH_SECTION
    if key in _WATCH_RANGES:
        lo, hi = _WATCH_RANGES[key]
        try:
            f = float(v)
        except ValueError:
            f = float("nan")
        if not lo <= f <= hi:
            raise _bad(path, where, key, v, f"seconds from {lo:g} to {hi:g}")
        return f
    if key == "max_alerts_per_minute":
        if not (v.isascii() and v.isdigit()) or not 1 <= int(v) <= 10000:
            raise _bad(path, where, key, v, "a whole number from 1 to 10000")
        return int(v)
    if key == "notify":
        if v not in NOTIFY:
            raise _bad(path, where, key, v, " | ".join(NOTIFY))
        return v
    if key in ("log_file", "metrics_file"):
        if key == "metrics_file" and not v:
            return ""
        if not v.startswith("/") or v.endswith("/"):
            raise _bad(path, where, key, v, "an absolute file path" +
                       (" (empty: no metrics)" if key == "metrics_file" else ""))
        return v
    if key == "webhook_url":
        if v and (not v.lower().startswith(("http://", "https://")) or any(c.isspace() for c in v)
                  or not v.split("://", 1)[1].split("/", 1)[0]):
            raise _bad(path, where, key, v, "an http:// or https:// URL (empty: no webhook)")
        return v
    # ignore_macs
    macs = []
    for x in (x for x in v.replace(",", " ").split() if x):
        m = x.lower().replace("-", ":")
        parts = m.split(":")
        if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
            raise _bad(path, where, key, x, "MAC addresses like 00:00:5e:00:01:0a, comma-separated")
        macs.append(m)
    return tuple(macs)

"""`phoenix-hook settings [--check]`: the settings in force, and a check of the file.

Every key of [phoenix-hook] with its value and whether the file sets it or it
is the default, then [guest:VMID] overrides, [api] and any other section.
--check reads the file as the hook and the commands do and names every
mistake, one line each (settings.parse itself stops at the first), so a typo
is caught before the next guest start: each key is tried on its own through
settings.parse (any key settings.py knows is checked the way it checks it),
then the whole file without the bad keys (for rules between keys, such as
probe_timeout_ms against deadline_s), then [api] as the API source reads it.
Exit 0 valid, 2 mistakes (each named on stderr).
"""
from __future__ import annotations

import configparser
import dataclasses
import json
import sys

from phoenix_hook.cli.main import UsageError

# Beside a key tried alone: the widest deadline and the shortest window, so a
# key is never blamed for a rule between keys (the whole-file pass checks those).
_ROOMY = {"deadline_s": "300", "probe_timeout_ms": "50"}
_SECRET_KEYS = ("token_value", "password", "secret")


def add_parser(sub):
    p = sub.add_parser("settings", help="the settings in force; --check names every mistake in the file",
                       description="Show the settings file in use and every setting in force: its "
                       "value and whether the file sets it or it is the default. --check: check the "
                       "file as the hookscript reads it and name each bad key or value. Exit 0 valid, "
                       "2 mistakes or bad usage.")
    p.add_argument("--check", action="store_true", help="only check the file; exit 2 naming each mistake")
    p.add_argument("--json", action="store_true", help="one JSON object: file, exists, settings "
                   "[{section, key, value, default}]")
    return p


def _ini(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"),
                                   default_section="\0no-default")
    cp.read_string(text)
    return cp


def _line(key: str, value: str) -> str:
    return f"{key} = " + value.replace("\n", "\n  ") + "\n"


def _section_text(cp, skip=frozenset()) -> str:
    out = []
    for name in cp.sections():
        keep = [_line(k, v) for k, v in cp[name].items() if (name, k) not in skip]
        if (name, None) in skip or (not keep and cp[name]):     # nothing of it left
            continue
        out += [f"[{name}]\n"] + keep
    return "".join(out)


def mistakes(text: str, path: str) -> list[str]:
    """Every mistake in a settings file, one line each (empty: valid)."""
    from phoenix_hook import settings as st
    try:
        cp = _ini(text)
    except configparser.Error:
        try:
            st.parse(text, path)
        except st.SettingsError as exc:
            return [str(exc)]
        return []
    found: list[str] = []
    bad: set = set()
    for name in cp.sections():
        items = list(cp[name].items())
        if not items:
            try:
                st.parse(f"[{name}]\n", path)
            except st.SettingsError as exc:
                found.append(str(exc))
                bad.add((name, None))
        for key, value in items:
            roomy = {k: v for k, v in _ROOMY.items() if not (name == st.SECTION and k == key)}
            trial = f"[{st.SECTION}]\n" + "".join(_line(k, v) for k, v in roomy.items())
            trial += _line(key, value) if name == st.SECTION else f"[{name}]\n" + _line(key, value)
            try:
                st.parse(trial, path)
            except st.SettingsError as exc:
                found.append(str(exc))
                bad.add((name, key))
    try:
        st.parse(_section_text(cp, bad) if bad else text, path)
    except st.SettingsError as exc:
        found.append(str(exc))
    if cp.has_section(st.API_SECTION):
        found += _api_mistakes(dict(cp[st.API_SECTION].items()), path)
    return list(dict.fromkeys(found))


def _api_mistakes(api: dict, path: str) -> list[str]:
    """[api] as `--source api` reads it: each key, then the set as a whole (the token file)."""
    from phoenix_hook.errors import SourceError
    from phoenix_hook.pve.api import ApiSource, check_api
    found = []
    for key, value in api.items():
        try:
            check_api({key: value}, path)
        except SourceError as exc:
            found.append(str(exc))
    if not found:
        try:
            ApiSource(api, settings_path=path, warn=lambda line: sys.stderr.write(line + "\n"))
        except SourceError as exc:
            found.append(str(exc))
    return found


def _show(value) -> str:
    if value is None or value == () or value == "":
        return ""
    if isinstance(value, tuple):
        return ", ".join("-".join(x) if isinstance(x, tuple) else str(x) for x in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def in_force(s, cp) -> list[dict]:
    """[{section, key, value, default}] for every key of [phoenix-hook], then the file's
    other sections as written ([api] secrets are not shown)."""
    from phoenix_hook import settings as st
    own = cp[st.SECTION] if cp is not None and cp.has_section(st.SECTION) else {}
    rows = []
    for f in dataclasses.fields(s):
        if f.name not in st.KNOWN_KEYS:
            continue
        rows.append({"section": st.SECTION, "key": f.name, "value": _show(getattr(s, f.name)),
                     "default": not (f.name in own and own[f.name].strip())})
    for name in (cp.sections() if cp is not None else []):
        if name == st.SECTION:
            continue
        for key, value in cp[name].items():
            shown = "(not shown)" if any(w in key for w in _SECRET_KEYS) else value.strip()
            rows.append({"section": name, "key": key, "value": shown, "default": False})
    return rows


def _where(args) -> tuple[str, str]:
    """(the settings file in use, why that one)."""
    import os

    from phoenix_hook.paths import SETTINGS_ENV, settings_file
    if getattr(args, "config", None):
        return args.config, "--config"
    if os.environ.get(SETTINGS_ENV):
        return os.environ[SETTINGS_ENV], f"${SETTINGS_ENV}"
    return settings_file(), "the default place"


def run(args) -> int:
    from phoenix_hook import settings as st
    path, why = _where(args)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if why != "the default place":
            raise UsageError(f"{path}: no such file ({why} names it); check the path") from None
        text = None
    except PermissionError:
        raise UsageError(f"{path}: cannot read the settings: permission denied; run it as root "
                         f"(sudo phoenix-hook settings)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the settings ({getattr(exc, 'strerror', None) or exc})") from None
    problems = mistakes(text, path) if text is not None else []

    def tell():
        for line in problems:
            sys.stderr.write(f"phoenix-hook: {line}\n")
        n = len(problems)
        sys.stderr.write(f"phoenix-hook: {n} mistake{'s' if n > 1 else ''} in {path}; fix "
                         f"{'them' if n > 1 else 'it'} before the next guest start (README 'Settings')\n")
        return 2
    if args.check:
        if problems:
            return tell()
        print(f"{path}: valid" if text is not None else
              f"{path} does not exist: every setting is the default (valid)")
        return 0
    try:
        s = st.parse(text, path) if text is not None else st.Settings(path=None)
    except st.SettingsError:
        return tell()                   # nothing is in force: the file as a whole is refused
    cp = _ini(text) if text is not None else None
    rows = in_force(s, cp)
    if args.json:
        print(json.dumps({"file": path, "exists": text is not None, "settings": rows}, indent=2))
        return tell() if problems else 0
    state = "" if text is not None else " (does not exist: every setting is the default)"
    print(f"settings file: {path} ({why}){state}")
    from phoenix_hook.checks.grid import grid
    from phoenix_hook.cli.tables import terminal
    term = terminal()
    cells = [(r["key"] if r["section"] == st.SECTION else f"[{r['section']}] {r['key']}",
              r["value"] or "(none)", "default" if r["default"] else "set in the file") for r in rows]
    print("\n".join(grid(("KEY", "VALUE", "FROM"), cells, term.width)))
    return tell() if problems else 0

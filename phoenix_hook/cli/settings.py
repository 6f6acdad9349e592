"""`phoenix-hook settings [--check]`: the settings in force, and a check of the file.

Every key of [phoenix-hook] with its value and whether the file sets it or it
is the default, then [guest:VMID] overrides, [api] and any other section.
The settings shown are the ones the hookscript uses: it reads the file as
settings.parse does with a list for the mistakes (each bad key takes its
default, README "Settings mistakes"). --check names every mistake, one line
each with what the hook uses instead, and [api] as the API source reads it,
so a typo is caught before the next guest start. Exit 0 valid, 2 mistakes.
"""
from __future__ import annotations

import configparser
import json
import os
import sys

from phoenix_hook import records
from phoenix_hook.cli.main import UsageError

_SECRET_KEYS = ("token_value", "password", "secret")


def add_parser(sub):
    p = sub.add_parser("settings", help="the settings in force; --check names every mistake in the file",
                       description="Show the settings file in use and every setting in force (as the "
                       "hookscript reads it): its value and whether the file sets it or it is the "
                       "default. --check: name each bad key or value, and what the hook uses instead. "
                       "Exit 0 valid, 2 mistakes or bad usage.")
    p.add_argument("--check", action="store_true", help="only check the file; exit 2 naming each mistake")
    p.add_argument("--json", action="store_true", help="one JSON object: file, exists, settings "
                   "[{section, key, value, default}]")
    return p


def _ini(text: str):
    """The file's sections as configparser reads them leniently, or None when it cannot."""
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"),
                                   default_section="\0no-default", strict=False)
    try:
        cp.read_string(text)
    except configparser.Error:
        return None
    return cp


def mistakes(text: str, path: str) -> list[str]:
    """Every mistake in a settings file, one line each (empty: valid): settings.parse's,
    as the hook meets them, then those of [api], which only the API source reads."""
    from phoenix_hook import settings as st
    found: list[str] = []
    parsed = st.parse(text, path, found)
    if parsed.api:
        found += _api_mistakes(parsed.api, path)
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
    if isinstance(value, bool):                   # announce: as the file spells it
        return "true" if value else "false"
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
    for f in records.fields(s):
        if f.name not in st.KNOWN_KEYS:
            continue
        in_file, used = f.name in own and own[f.name].strip(), False
        if in_file:
            # In force only when valid and not reset by a rule between keys (the window).
            try:
                used = st._value(s.path, st.SECTION, f.name, own[f.name]) == getattr(s, f.name)
            except st.SettingsError:
                used = False
        row = {"section": st.SECTION, "key": f.name, "value": _show(getattr(s, f.name)), "default": not used}
        if in_file and not used:
            row["mistake"] = True           # the file sets it, the hook cannot use it
        rows.append(row)
    rows += _watch_in_force(s, cp)
    for name in (cp.sections() if cp is not None else []):
        if name in (st.SECTION, st.WATCH_SECTION):
            continue
        for key, value in cp[name].items():
            shown = "(not shown)" if any(w in key for w in _SECRET_KEYS) else value.strip()
            rows.append({"section": name, "key": key, "value": shown, "default": False})
    return rows


def _watch_in_force(s, cp) -> list[dict]:
    """[watch] as `phoenix-hook watch` uses it: every key, set or default, a bad value marked
    (the watch takes its default, as the hook does for [phoenix-hook]); nothing when the file
    has no [watch] section."""
    from phoenix_hook import settings as st
    if cp is None or not cp.has_section(st.WATCH_SECTION):
        return []
    own = cp[st.WATCH_SECTION]
    rows = []
    for f in records.fields(s.watch):
        in_file, used = f.name in own, False
        if in_file:
            try:
                used = st._watch_value(s.path, f.name, own[f.name].strip()) == getattr(s.watch, f.name)
            except st.SettingsError:
                used = False
        row = {"section": st.WATCH_SECTION, "key": f.name, "value": _show(getattr(s.watch, f.name)),
               "default": not used}
        if in_file and not used:
            row["mistake"] = True
        rows.append(row)
    return rows


def _where(args) -> tuple[str, str]:
    """(the settings file in use, why that one)."""
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
        # As every command reads it: a missing --config file, or one group or others
        # could write, is refused here too (exit 2).
        text, path = st._read(getattr(args, "config", None), os.environ)
    except st.SettingsError as exc:
        raise UsageError(str(exc)) from None
    problems = mistakes(text, path) if text is not None else []

    def tell():
        for line in problems:
            sys.stderr.write(f"phoenix-hook: {line}\n")
        n = len(problems)
        sys.stderr.write(f"phoenix-hook: {n} mistake{'s' if n > 1 else ''} in {path}; fix "
                         f"{'them' if n > 1 else 'it'} before the next guest start (README 'Settings mistakes')\n")
        return 2
    if args.check:
        if problems:
            return tell()
        print(f"{path}: valid" if text is not None else
              f"{path} does not exist: every setting is the default (valid)")
        return 0
    s = st.parse(text, path, []) if text is not None else st.Settings(path=None)
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
              r["value"] or "(none)", "default, the file's value is a mistake" if r.get("mistake")
              else "default" if r["default"] else "set in the file") for r in rows]
    print("\n".join(grid(("KEY", "VALUE", "FROM"), cells, term.width)))
    return tell() if problems else 0

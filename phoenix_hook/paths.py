"""Well-known paths, in a module with no imports so the hook's fast path stays fast."""
import os

SETTINGS_FILE = "/etc/phoenix-hook/phoenix-hook.conf"
SETTINGS_ENV = "PHOENIX_HOOK_CONF"


def settings_file(environ=os.environ) -> str:
    return environ.get(SETTINGS_ENV) or SETTINGS_FILE


def chain_dir(environ=os.environ) -> str:
    """install.sh --chain records each guest's previous hookscript here, beside the settings."""
    return os.path.join(os.path.dirname(settings_file(environ)), "chain")


# The snippet install.sh (and the Debian package's install) attaches to guests:
# STORAGE:snippets/phoenix-hook.py. `audit` counts a guest as protected when its
# hookscript is this file on any storage.
SNIPPET_NAME = "phoenix-hook.py"


DEFAULT_PVE_ROOT = "/etc/pve"


def pve_root(environ=os.environ) -> str:
    """pve_root from the settings file, for the phases that need nothing else (where
    chain records live, pve/chain.py): configparser only, not the whole settings.py.
    The rules are settings.py's, kept in step by a test: section [phoenix-hook], inline
    comments, an absolute path, a file others cannot write; else the default."""
    import stat
    try:
        with open(settings_file(environ), encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            if st.st_uid not in (0, os.geteuid()) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return DEFAULT_PVE_ROOT
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return DEFAULT_PVE_ROOT
    # The usual file sets no pve_root (the shipped one has it commented out): then there is
    # nothing to parse, and configparser stays unloaded on the quick phases.
    if not any(line.lstrip().lower().startswith("pve_root") for line in text.splitlines()):
        return DEFAULT_PVE_ROOT
    import configparser
    try:
        cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"),
                                       default_section="\0no-default", strict=False)
        try:
            cp.read_string(text)
        except configparser.ParsingError:
            pass                           # what could be read was read (settings.py does the same)
        v = cp.get("phoenix-hook", "pve_root", fallback="").strip()
    except configparser.Error:
        return DEFAULT_PVE_ROOT
    return v if v.startswith("/") else DEFAULT_PVE_ROOT

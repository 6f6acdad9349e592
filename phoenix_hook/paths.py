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

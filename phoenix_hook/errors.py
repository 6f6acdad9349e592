"""The exceptions every layer raises, at the bottom so nothing imports upward.

No imports: the hookscript reaches this on its fast path. Each str() is the one
line an admin sees; the exit code is chosen at the top (cli/main.py, hook.py).
"""


class UsageError(Exception):
    """Bad usage or bad config: exit 2 with this one line."""


class CannotCheck(Exception):
    """The tool could not do its job (no permission, source unreachable): exit 3."""


class SettingsError(ValueError):
    """A bad settings file or value; str() is the one line to show the admin."""


class SourceError(Exception):
    """Guest configs could not be read; str() is the line for the admin."""


class NoSuchGuest(SourceError):
    """The named guest has no config on any node."""


class ApiError(SourceError):
    """The API (or the way to it) failed: auth, permission, 5xx, timeout, TLS. Exit 3."""


class ApiSettingsError(SourceError):
    """[api] settings incomplete, token file missing/unsafe: the admin fixes the settings. Exit 2."""

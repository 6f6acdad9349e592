"""`phoenix-hook`: the command-line front. Each subcommand lives in cli/<name>.py.

A subcommand module has `add_parser(subparsers)` and `run(args) -> int`.
Exit codes (README "Exit codes"): 0 all clear, 1 a conflict or finding,
2 bad usage or bad config, 3 could not check. Errors a user can cause end
in one line on stderr; a traceback means a bug in phoenix-hook.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from phoenix_hook import __version__
from phoenix_hook.errors import CannotCheck, UsageError  # noqa: F401 (commands import them here too)

# Order is the order of `phoenix-hook --help`.
COMMANDS = ["check", "preflight", "audit", "reservations", "scan", "neigh", "locate", "leases", "demo"]

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_CANNOT = 0, 1, 2, 3




class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"phoenix-hook: {message} (see phoenix-hook {self.prog.split()[-1]} --help)\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phoenix-hook", description="Keep Proxmox VE guests from starting on an "
                     "IP address someone else already holds.")
    parser.add_argument("--version", action="version", version=f"phoenix-hook {__version__}")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: $PHOENIX_HOOK_CONF "
                        "or /etc/phoenix-hook/phoenix-hook.conf)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"phoenix_hook.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"phoenix_hook.cli.{name}":
                raise
            continue
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def load_settings(args):
    """Settings for a command; a bad file is a UsageError (exit 2)."""
    from phoenix_hook.settings import SettingsError, load
    try:
        return load(getattr(args, "config", None))
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args._run(args)
    except UsageError as exc:
        from phoenix_hook.checks.report import printable      # values in messages may hold anything
        sys.stderr.write(f"phoenix-hook: {printable(exc)}\n")
        return EXIT_USAGE
    except CannotCheck as exc:
        from phoenix_hook.checks.report import printable
        sys.stderr.write(f"phoenix-hook: could not check: {printable(exc)}\n")
        return EXIT_CANNOT
    except KeyboardInterrupt:
        sys.stderr.write("phoenix-hook: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK

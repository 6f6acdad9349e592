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
COMMANDS = ["check", "preflight", "audit", "reservations", "scan", "neigh", "locate", "leases", "log", "settings",
            "watch",
            "demo"]

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_CANNOT = 0, 1, 2, 3
CONFIG_HELP = ("settings file (default: $PHOENIX_HOOK_CONF or /etc/phoenix-hook/phoenix-hook.conf); "
               "before or after the command")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"phoenix-hook: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phoenix-hook", description="Keep Proxmox VE guests from starting on an "
                     "IP address someone else already holds.",
                     epilog="Options go before, between or after a command's arguments. "
                     "Exit codes: 0 all clear, 1 a conflict or finding, 2 bad usage or settings, "
                     "3 could not check. `phoenix-hook COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"phoenix-hook {__version__}")
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"phoenix_hook.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"phoenix_hook.cli.{name}":
                raise
            continue
        p = mod.add_parser(sub)
        # --config after the command too; SUPPRESS keeps one given before it.
        if "--config" not in p._option_string_actions:
            p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
        p.set_defaults(_run=mod.run)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line, with each command's options anywhere among its arguments
    (argparse's intermixed parsing: `preflight plan.json --no-probe 951`)."""
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # Options before the command are the top-level ones; the first word that is
    # not one of them (nor --config's FILE) is the command.
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        i += 2 if argv[i] == "--config" else 1
    head, rest = argv[:i], argv[i:]
    top = parser.parse_args(head)             # --help, --version, a bad option: argparse's words
    if not rest:
        parser.print_help(sys.stderr)
        sys.exit(EXIT_USAGE)
    name = rest[0]
    if name not in subs.choices:
        parser.error(f"unknown command '{name}'; commands: {', '.join(subs.choices)}")
    sub = subs.choices[name]
    try:
        ns = sub.parse_intermixed_args(rest[1:])
    except TypeError:                   # a command argparse cannot intermix (REMAINDER, subcommands)
        ns = sub.parse_args(rest[1:])
    ns.command = name
    if getattr(ns, "config", None) is None:
        ns.config = top.config
    ns._argv = list(argv)
    return ns


def command_line(args) -> str:
    """The admin's command line as typed, for a hint like 'sudo phoenix-hook check 951'."""
    import shlex
    return "phoenix-hook " + shlex.join(getattr(args, "_argv", None) or [args.command])


def need_raw_sockets(args, alternative: str = "") -> None:
    """Stop at once, before any config is read, when probing cannot work here:
    the socket is opened and closed (net/wire.raw_access), not guessed from the uid."""
    from phoenix_hook.net.wire import raw_access
    why = raw_access()
    if why:
        raise CannotCheck(f"{args.command} sends probes and {why}; run it as root: "
                          f"sudo {command_line(args)}" + (f" ({alternative})" if alternative else ""))


def vmid_arg(text: str) -> int:
    """A VMID given on the command line, as PVE allows them (100 up); else UsageError."""
    if not (text.isascii() and text.isdigit()) or not 100 <= int(text) <= 999999999:
        raise UsageError(f"'{text}' is not a VMID; VMIDs are numbers from 100 up")
    return int(text)


def check_timeout_ms(ms) -> None:
    """--timeout-ms of the probing commands (check, preflight, locate); None: the settings'."""
    if ms is not None and not 50 <= ms <= 60000:
        raise UsageError(f"--timeout-ms {ms} is out of range; use 50 to 60000")


def load_settings(args):
    """Settings for a command; a bad file is a UsageError (exit 2)."""
    from phoenix_hook.settings import SettingsError, load
    try:
        return load(getattr(args, "config", None))
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def main(argv=None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    from phoenix_hook.errors import ApiSettingsError, SourceError
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
    except ApiSettingsError as exc:           # what a command left uncaught: still one line
        sys.stderr.write(f"phoenix-hook: {exc}\n")
        return EXIT_USAGE
    except SourceError as exc:
        sys.stderr.write(f"phoenix-hook: could not check: {exc}\n")
        return EXIT_CANNOT
    except KeyboardInterrupt:
        sys.stderr.write("phoenix-hook: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK

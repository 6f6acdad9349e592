"""The man page and the bash completion of `phoenix-hook`, written from its argparse parser.

Both are generated when the .deb is built, so they list exactly the options
the command has. Output depends only on the parser and the date passed in
(the build gives SOURCE_DATE_EPOCH's), never on the terminal: argparse
wraps at $COLUMNS, which the build fixes.
"""
from __future__ import annotations

import argparse
import time

# Hand-written parts of the man page: what the parser cannot say.
EXIT_STATUS = [
    ("0", "all clear, or nothing to check"),
    ("1", "a conflict or a finding"),
    ("2", "bad usage or bad settings (one line on standard error)"),
    ("3", "could not check (no root, bridge missing, configs or API unreachable)"),
]
FILES = [
    ("/etc/phoenix-hook/phoenix-hook.conf", "the settings (INI); every key is described in it"),
    ("/usr/share/phoenix-hook/hookscripts/phoenix-hook.py",
     "the hookscript; install.sh copies it to a snippets storage and attaches it to guests"),
    ("/usr/share/phoenix-hook/install.sh",
     "attaches the hookscript to guests (--attach VMID...|all) and detaches it again (--uninstall); "
     "run it with --help"),
    ("/var/log/phoenix-hook/decisions.jsonl", "one JSON line per hook decision (log_file)"),
    ("/run/phoenix-hook", "addresses of guests starting right now (run_dir)"),
]
ENVIRONMENT = [
    ("PHOENIX_HOOK_CONF", "the settings file, when --config is not given"),
]


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in --help order."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append((name, helps.get(name, ""), sub))
    return out


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)


def _metavar(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    fmt = parser._get_formatter()
    if action.nargs == 0:
        return ""
    return fmt._format_args(action, fmt._get_default_metavar_for_optional(action))


# --- roff ---------------------------------------------------------------------
def roff(text: str) -> str:
    """Text for a roff line: backslashes and hyphens escaped, no leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def _bold_option(parser, action) -> str:
    names = ", ".join(f"\\fB{roff(s)}\\fR" for s in action.option_strings)
    meta = _metavar(parser, action)
    return f"{names} \\fI{roff(meta)}\\fR" if meta else names


def _usage(parser: argparse.ArgumentParser) -> str:
    text = parser.format_usage().strip()
    if not text.startswith("usage: "):
        return text
    # argparse indents continuation lines under the "usage: " it prefixes.
    lines = text[len("usage: "):].splitlines()
    return "\n".join([lines[0]] + [line[len("usage: "):] if line.startswith(" " * 7) else line
                                    for line in lines[1:]])


def manpage(parser: argparse.ArgumentParser, version: str, epoch: int) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    prog = parser.prog
    out = [
        f'.TH {prog.upper()} 1 "{date}" "{prog} {version}" "User Commands"',
        ".SH NAME",
        f"{prog} \\- {roff(parser.description.rstrip('.').lower()[:1] + parser.description.rstrip('.')[1:])}",
        ".SH SYNOPSIS",
        f".B {prog}",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
        ".SH DESCRIPTION",
        roff(parser.description),
        ".PP",
        "The hookscript that guards each guest start is attached with",
        ".BR /usr/share/phoenix\\-hook/install.sh ;",
        "this command checks by hand, plans, audits and scans.",
        ".SH OPTIONS",
    ]
    for action in _options(parser):
        out += [".TP", _bold_option(parser, action), roff(_help(parser, action))]
    out.append(".SH COMMANDS")
    for name, short, sub in subcommands(parser):
        out += [f".SS {prog} {name}", ".nf", roff(_usage(sub)), ".fi"]
        if sub.description:
            out += [".PP", roff(sub.description)]
        elif short:
            out += [".PP", roff(short)]
        for action in _positionals(sub):
            out += [".TP", f"\\fI{roff(_metavar(sub, action))}\\fR", roff(_help(sub, action))]
        for action in _options(sub):
            if action.option_strings == ["-h", "--help"]:
                continue
            out += [".TP", _bold_option(sub, action), roff(_help(sub, action))]
    out.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        out += [".TP", f".B {code}", roff(meaning)]
    out.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        out += [".TP", f".B {roff(name)}", roff(meaning)]
    out.append(".SH FILES")
    for path, meaning in FILES:
        out += [".TP", f".I {roff(path)}", roff(meaning)]
    out += [".SH SEE ALSO", ".BR pct (1),", ".BR qm (1),", ".BR arping (8)"]
    return "\n".join(out) + "\n"


# --- bash completion ---------------------------------------------------------------
_FILE_METAVARS = {"FILE", "PLAN", "PATH"}


def _shell_words(words) -> str:
    return " ".join(words)


def completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion function: subcommands, their options, option choices, files where a file is asked for."""
    prog = parser.prog
    fn = "_" + prog.replace("-", "_")
    subs = subcommands(parser)
    top_opts = [s for a in _options(parser) for s in a.option_strings]
    value_cases = []       # "<command> <option>") COMPREPLY=...
    for cmd, p in [("", parser)] + [(name, sub) for name, _, sub in subs]:
        for action in _options(p):
            if action.nargs == 0:
                continue
            pattern = "|".join(f'"{cmd} {s}"' for s in action.option_strings)
            if action.choices:
                words = _shell_words(str(c) for c in action.choices)
                value_cases.append(f'    {pattern}) COMPREPLY=($(compgen -W "{words}" -- "$cur")); return ;;')
            elif (action.metavar or "") in _FILE_METAVARS:
                value_cases.append(f'    {pattern}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
            else:
                value_cases.append(f"    {pattern}) return ;;")
    cmd_cases = []
    for name, _, sub in subs:
        opts = _shell_words(s for a in _options(sub) for s in a.option_strings)
        files = any((a.metavar or "") in _FILE_METAVARS for a in _positionals(sub))
        if files:
            cmd_cases.append(f'    {name}) if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "{opts}" -- "$cur")); '
                             f'else COMPREPLY=($(compgen -f -- "$cur")); fi ;;')
        else:
            cmd_cases.append(f'    {name}) COMPREPLY=($(compgen -W "{opts}" -- "$cur")) ;;')
    names = _shell_words(name for name, _, _ in subs)
    return "\n".join([
        f"# bash completion for {prog}, generated from its argparse parser    -*- shell-script -*-",
        f"{fn}() {{",
        "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd='' i",
        "  for ((i = 1; i < COMP_CWORD; i++)); do",
        f"    case ${{COMP_WORDS[i]}} in {'|'.join(name for name, _, _ in subs)}) cmd=${{COMP_WORDS[i]}}; break ;; esac",
        "  done",
        '  case "$cmd $prev" in',
        *value_cases,
        "  esac",
        '  case "$cmd" in',
        f'    "") COMPREPLY=($(compgen -W "{_shell_words(top_opts)} {names}" -- "$cur")) ;;',
        *cmd_cases,
        "  esac",
        "}",
        f"complete -F {fn} {prog}",
        "",
    ])

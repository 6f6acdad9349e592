#!/usr/bin/env python3
"""Build dist/phoenix-hook_<version>_all.deb with dpkg-deb, reproducibly.

    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) python3 packaging/build_deb.py [--out DIR]

(`./dev.sh deb` does exactly this.) The same checkout and SOURCE_DATE_EPOCH
give the same bytes: every file gets a fixed mode and the epoch as mtime,
owners are root:root (dpkg-deb --root-owner-group), dpkg-deb sorts the tar
members and stamps the ar members with SOURCE_DATE_EPOCH, gzip writes no
name or time, and xz runs single-threaded.

Contents: /usr/bin/phoenix-hook, the package in Debian's dist-packages, the
hookscript (`#!/usr/bin/python3 -I`) and install.sh under
/usr/share/phoenix-hook, the default settings as a conffile, a man page and
a bash completion generated from the argparse parser, and, when the
checkout has them, the logrotate rule (a conffile), systemd/*.service|*.timer
(ExecStart pointing at /usr/bin/phoenix-hook; not enabled) and the watch's
notification templates.
"""
from __future__ import annotations

import argparse
import configparser
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEB = REPO / "packaging" / "deb"
PACKAGE = "phoenix-hook"
PYDIR = "usr/lib/python3/dist-packages"
SHARE = "usr/share/phoenix-hook"
DOC = f"usr/share/doc/{PACKAGE}"
HOOK_SHEBANG = "#!/usr/bin/python3 -I"
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class BuildError(Exception):
    pass


def metadata() -> tuple[str, str, str]:
    """(version, top-level package, console-script target) from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    version = cfg["metadata"]["version"].strip()
    scripts = cfg.get("options.entry_points", "console_scripts", fallback="")
    targets = dict(line.split("=", 1) for line in scripts.strip().splitlines() if "=" in line)
    target = {k.strip(): v.strip() for k, v in targets.items()}.get(PACKAGE)
    if not target or ":" not in target:
        raise BuildError(f"setup.cfg has no console_scripts entry '{PACKAGE} = module:function'")
    return version, target.split(".")[0], target


def changelog_head() -> tuple[str, str]:
    """(version, maintainer) of the newest entry of packaging/deb/changelog."""
    text = (DEB / "changelog").read_text()
    m = re.match(rf"{PACKAGE} \(([^)]+)\)", text)
    trailer = re.search(r"^ -- (.+?>)  ", text, re.M)
    if not m or not trailer:
        raise BuildError("packaging/deb/changelog does not start with a Debian changelog entry")
    return m.group(1), trailer.group(1)


def changelog_epoch() -> int:
    """The newest changelog entry's date: the timestamp when SOURCE_DATE_EPOCH is not set."""
    from email.utils import parsedate_to_datetime
    m = re.search(r"^ -- .+?>  (.+)$", (DEB / "changelog").read_text(), re.M)
    if not m:
        raise BuildError("packaging/deb/changelog has no ' -- NAME <MAIL>  DATE' line")
    return int(parsedate_to_datetime(m.group(1)).timestamp())


class Tree:
    """The package root being assembled; every entry gets an explicit mode."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, rel: str, data: bytes | str, mode: int = 0o644) -> None:
        p = self.path(rel)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        p.chmod(mode)

    def copy(self, src: Path, rel: str, mode: int = 0o644) -> None:
        self.write(rel, src.read_bytes(), mode)

    def gzip(self, rel: str, data: str) -> None:
        buf = io.BytesIO()
        # No file name and mtime 0 in the header: the same text, the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as z:
            z.write(data.encode())
        self.write(rel, buf.getvalue())


def python_files(pkg_dir: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(pkg_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith(SKIP_SUFFIXES)]
    return out


def hookscript() -> str:
    lines = (REPO / "hookscripts" / "phoenix-hook.py").read_text().splitlines(keepends=True)
    body = lines[1:] if lines and lines[0].startswith("#!") else lines
    # -I: PVE runs it as root with the snippets directory as the script's
    # directory; isolated mode keeps that directory and PYTHON* variables
    # out of the import path.
    return HOOK_SHEBANG + "\n" + "".join(body)


def command_script(target: str) -> str:
    module, func = target.split(":")
    return (f"{HOOK_SHEBANG}\n"
            f"# {PACKAGE}: the command; the code is in {module.split('.')[0]} (Debian's dist-packages).\n"
            f"import sys\n\nfrom {module} import {func}\n\nsys.exit({func}())\n")


def generated_docs(target: str, version: str, epoch: int) -> tuple[str, str]:
    """(man page, bash completion) from the checkout's own parser."""
    os.environ["COLUMNS"] = "80"            # argparse wraps usage lines at $COLUMNS
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "packaging"))
    import importlib
    import argparse_docs
    module = importlib.import_module(target.split(":")[0])
    build_parser = getattr(module, "build_parser", None)
    if build_parser is None:
        raise BuildError(f"{target.split(':')[0]} has no build_parser() to write the man page from")
    parser = build_parser()
    return argparse_docs.manpage(parser, version, epoch), argparse_docs.completion(parser)


def installed_size(root: Path) -> int:
    """KiB as dpkg-gencontrol counts them: each file rounded up, 1 per directory or link."""
    total = 0
    for p in root.rglob("*"):
        if "DEBIAN" in p.relative_to(root).parts:
            continue
        if p.is_file() and not p.is_symlink():
            total += (p.stat().st_size + 1023) // 1024
        else:
            total += 1
    return total


def build(out_dir: Path, epoch: int) -> Path:
    version, top, target = metadata()
    deb_version, maintainer = changelog_head()
    if deb_version != version:
        raise BuildError(f"packaging/deb/changelog's newest entry is {deb_version} but setup.cfg says "
                         f"{version}: add a changelog entry for {version}")
    with tempfile.TemporaryDirectory(prefix="phoenix-deb-") as work:
        root = Path(work) / "root"
        root.mkdir()
        return _assemble(Tree(root), out_dir, epoch, version, top, target, maintainer)


def _assemble(t: Tree, out_dir: Path, epoch: int, version: str, top: str, target: str,
              maintainer: str) -> Path:
    root = t.root

    pkg_dir = REPO / top
    for src in python_files(pkg_dir):
        t.copy(src, f"{PYDIR}/{top}/{src.relative_to(pkg_dir)}")
    t.write("usr/bin/phoenix-hook", command_script(target), 0o755)
    t.write(f"{SHARE}/hookscripts/phoenix-hook.py", hookscript(), 0o755)
    t.copy(REPO / "install.sh", f"{SHARE}/install.sh", 0o755)
    conf = REPO / "conf" / "phoenix-hook.conf"
    t.copy(conf, "etc/phoenix-hook/phoenix-hook.conf")
    t.copy(conf, f"{SHARE}/conf/phoenix-hook.conf")   # install.sh's copy, beside it as in a checkout
    logrotate = REPO / "contrib" / "logrotate" / "phoenix-hook"
    if logrotate.is_file():
        t.copy(logrotate, "etc/logrotate.d/phoenix-hook")
    for unit in sorted((REPO / "systemd").glob("*.service")) + sorted((REPO / "systemd").glob("*.timer")):
        # Installed, not enabled (install.sh --watch enables it); the command is the package's.
        text = re.sub(r"^ExecStart=\S*phoenix-hook\b", "ExecStart=/usr/bin/phoenix-hook", unit.read_text(), flags=re.M)
        t.write(f"lib/systemd/system/{unit.name}", text)
    for tpl in sorted((REPO / "phoenix_hook" / "watch" / "templates").glob("*.hbs")) + sorted(
            (REPO / "templates").glob("*.hbs")):
        t.copy(tpl, f"{SHARE}/templates/{tpl.name}")    # install.sh --watch copies them for PVE

    man, completion = generated_docs(target, version, epoch)
    t.gzip("usr/share/man/man1/phoenix-hook.1.gz", man)
    t.write("usr/share/bash-completion/completions/phoenix-hook", completion)
    t.copy(DEB / "copyright", f"{DOC}/copyright")
    # A native package: changelog.gz (Debian policy 12.7).
    t.gzip(f"{DOC}/changelog.gz", (DEB / "changelog").read_text())
    t.gzip(f"{DOC}/README.md.gz", (REPO / "README.md").read_text())

    md5 = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("etc/"):      # conffiles are not in md5sums
            md5.append(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {rel}\n")
    control = ((DEB / "control.in").read_text().replace("@VERSION@", version)
               .replace("@MAINTAINER@", maintainer).replace("@INSTALLED_SIZE@", str(installed_size(root))))
    t.write("DEBIAN/control", control)
    t.write("DEBIAN/md5sums", "".join(md5))
    conffiles = sorted("/" + p.relative_to(root).as_posix() for p in (root / "etc").rglob("*") if p.is_file())
    t.write("DEBIAN/conffiles", "".join(f"{c}\n" for c in conffiles))
    for script in ("postinst", "prerm", "postrm"):
        t.copy(DEB / script, f"DEBIAN/{script}", 0o755)

    for p in [root, *root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
        os.utime(p, (epoch, epoch), follow_symlinks=False)

    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"{PACKAGE}_{version}_all.deb"
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    p = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--threads-max=1", "--build",
                        str(root), str(deb)], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise BuildError(f"dpkg-deb failed: {p.stderr.strip()}")
    return deb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build the phoenix-hook .deb (reproducibly).")
    ap.add_argument("--out", type=Path, default=REPO / "dist", help="output directory (default dist/)")
    args = ap.parse_args(argv)
    if shutil.which("dpkg-deb") is None:
        sys.stderr.write("build_deb: dpkg-deb not found (apt install dpkg)\n")
        return 3
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    if raw and not raw.isdigit():
        sys.stderr.write(f"build_deb: SOURCE_DATE_EPOCH={raw!r} is not a number of seconds\n")
        return 2
    try:
        deb = build(args.out.resolve(), int(raw) if raw else changelog_epoch())
    except BuildError as exc:
        sys.stderr.write(f"build_deb: {exc}\n")
        return 2
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())

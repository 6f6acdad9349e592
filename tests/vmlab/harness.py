"""A full-kernel lab: run a command on Debian's own kernel, in a qemu VM, on this machine's root.

The machines here run a kernel without 802.1Q devices or bridge VLAN
filtering; Debian's `linux-image-amd64` has both (REFERENCE section 4). This
boots its vmlinuz under `qemu-system-x86_64 -accel tcg -cpu max` (software
emulation: /dev/kvm hangs on these machines) with a small initramfs built
here, at test time, from busybox-static and the kernel package's own modules
(tests/vmlab/init.sh is its PID 1). The VM mounts this machine's / read-only
over 9p, puts tmpfs where programs write, chroots into it and runs the
command; its exit code and output come back through a second, writable 9p
share of a host directory. The VM has no network device at all (`-nic
none`): nothing it does can reach a real network.

Where the pieces come from (first found wins):
  kernel   $PHOENIX_VMLAB_KERNEL, the cache, or an installed linux-image
           (a root holding boot/vmlinuz-<kver> and lib/modules/<kver>/)
  busybox  $PHOENIX_VMLAB_BUSYBOX, the cache, or /bin/busybox when static
  qemu     qemu-system-x86_64 on PATH (apt: qemu-system-x86)
The cache ($PHOENIX_VMLAB_CACHE, default ~/.cache/phoenix-hook/vmlab) is
filled by `./dev.sh vmlab` (apt-get download + dpkg -x: the packages are
unpacked, never installed, so no initramfs-tools hook runs).

Command line: python3 tests/vmlab/harness.py [--timeout S] -- argv...
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT = HERE / "init.sh"
CACHE = Path(os.environ.get("PHOENIX_VMLAB_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phoenix-hook" / "vmlab")
# What the lab needs beyond the host kernel: 9p over virtio to reach the
# host's files, and the devices the VLAN scenarios build. Their
# dependencies (llc, stp, garp, mrp, netfs, ...) are added from the modules'
# own "depends=" field.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "8021q", "bridge", "veth", "macvlan")
QEMU = "qemu-system-x86_64"


class VmLabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Kernel:
    version: str
    vmlinuz: Path
    modules: Path          # lib/modules/<version>


@dataclass
class Result:
    rc: int | None         # the command's exit code; None when it never finished
    output: str            # its stdout and stderr
    console: str           # the VM's serial console: kernel and init messages
    seconds: float         # wall time from qemu's start to its end
    boot_seconds: float | None  # VM uptime when the root was mounted (init's message)
    io_dir: Path           # the shared directory: files the command wrote to /run/vmlab


# -- finding the pieces --------------------------------------------------------

def kernel_roots() -> list[Path]:
    roots = []
    if os.environ.get("PHOENIX_VMLAB_KERNEL"):
        roots.append(Path(os.environ["PHOENIX_VMLAB_KERNEL"]))
    roots += [CACHE / "kernel", Path("/")]
    return roots


def _version_key(v: str):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]


def find_kernel() -> Kernel | None:
    for root in kernel_roots():
        found = []
        for vmlinuz in (root / "boot").glob("vmlinuz-*"):
            version = vmlinuz.name[len("vmlinuz-"):]
            mods = root / "lib" / "modules" / version
            if (mods / "kernel").is_dir():
                found.append(Kernel(version, vmlinuz, mods))
        if found:
            return max(found, key=lambda k: _version_key(k.version))
    return None


def _is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:      # ELF, 64-bit
                return False
            phoff = int.from_bytes(head[32:40], "little")
            phentsize = int.from_bytes(head[54:56], "little")
            phnum = int.from_bytes(head[56:58], "little")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(int.from_bytes(table[i:i + 4], "little") != 3     # PT_INTERP
               for i in range(0, len(table), phentsize))


def find_busybox() -> Path | None:
    candidates = []
    if os.environ.get("PHOENIX_VMLAB_BUSYBOX"):
        candidates.append(Path(os.environ["PHOENIX_VMLAB_BUSYBOX"]))
    candidates += [CACHE / "busybox" / "bin" / "busybox", Path("/bin/busybox")]
    return next((c for c in candidates if _is_static_elf(c)), None)


def unavailable() -> str | None:
    """None when a VM can be booted here, else what is missing and how to get it."""
    if os.geteuid() != 0:
        return "the VM lab needs root (it shares / with the VM and builds namespaces in it)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (apt-get install qemu-system-x86, or ./dev.sh vmlab as root)"
    if find_kernel() is None:
        return ("no Debian kernel for the VM lab (./dev.sh vmlab as root unpacks linux-image-amd64 "
                f"into {CACHE}; or set PHOENIX_VMLAB_KERNEL to a root with boot/vmlinuz-* and lib/modules/)")
    if find_busybox() is None:
        return f"no static busybox for the VM lab's initramfs (./dev.sh vmlab as root unpacks busybox-static into {CACHE})"
    return None


# -- the initramfs -------------------------------------------------------------

def _module_index(moddir: Path) -> dict[str, Path]:
    index = {}
    for path in (moddir / "kernel").rglob("*.ko"):
        index[path.name[:-3].replace("-", "_")] = path
    return index


def _depends(path: Path) -> list[str]:
    """The module's own dependency list: the "depends=" entry of its .modinfo section."""
    m = re.search(rb"\0depends=([^\0]*)\0", path.read_bytes())
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def module_closure(moddir: Path, wanted=MODULES) -> list[Path]:
    """wanted and everything they depend on, each after its dependencies; built-ins skipped."""
    index = _module_index(moddir)
    builtin = set()
    if (moddir / "modules.builtin").is_file():
        builtin = {Path(x).name[:-3].replace("-", "_") for x in (moddir / "modules.builtin").read_text().split()}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise VmLabError(f"module dependency loop: {' -> '.join(chain + (name,))}")
        if name not in index:
            raise VmLabError(f"module {name} is neither in {moddir}/kernel nor built in")
        for dep in _depends(index[name]):
            visit(dep, chain + (name,))
        seen.add(name)
        order.append(index[name])

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    """One entry of a "newc" cpio archive, the format the kernel unpacks as initramfs."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08x" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build_initramfs(kernel: Kernel, busybox: Path, cache: Path = CACHE) -> Path:
    """The lab's initramfs (cached by content: rebuilt when a piece changes)."""
    modules = module_closure(kernel.modules)
    pieces = [("bin/busybox", busybox.read_bytes(), 0o100755), ("init", INIT.read_bytes(), 0o100755),
              ("modules", "".join(f"{p.name[:-3]}\n" for p in modules).encode(), 0o100644)]
    pieces += [(f"lib/modules/{p.name}", p.read_bytes(), 0o100644) for p in modules]
    digest = hashlib.sha256()
    for name, data, mode in pieces:
        digest.update(f"{name}\0{mode}\0{len(data)}\0".encode())
        digest.update(data)
    out = cache / "initramfs" / f"{kernel.version}-{digest.hexdigest()[:16]}.cpio"
    if out.is_file():
        return out
    archive = [_cpio_entry(d, 0o040755, ino=i) for i, d in enumerate(("bin", "dev", "lib", "lib/modules"), 1)]
    archive.append(_cpio_entry("dev/console", 0o020600, rdev=(5, 1), ino=10))
    archive += [_cpio_entry(name, mode, data, ino=100 + i) for i, (name, data, mode) in enumerate(pieces)]
    archive.append(_cpio_entry("TRAILER!!!", 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(b"".join(archive))
    tmp.replace(out)
    return out


# -- the kernel image ----------------------------------------------------------

def boot_image(kernel: Kernel, cache: Path = CACHE) -> Path:
    """The kernel to hand qemu: its uncompressed ELF when it can boot that way, else vmlinuz.

    A kernel built with CONFIG_PVH boots from its uncompressed vmlinux
    straight into 64-bit mode (qemu's PVH entry): no BIOS boot path and no
    xz decompression in emulated code. Measured here, that takes a VM from
    about 8 s to about 3.5 s from qemu's start to the command.
    """
    config = kernel.vmlinuz.parent / f"config-{kernel.version}"
    if not config.is_file() or "\nCONFIG_PVH=y\n" not in config.read_text():
        return kernel.vmlinuz
    st = kernel.vmlinuz.stat()
    out = cache / "vmlinux" / f"{kernel.version}-{st.st_size}-{int(st.st_mtime)}"
    if out.is_file():
        return out
    data = kernel.vmlinuz.read_bytes()
    elf = None
    at = data.find(b"\xfd7zXZ\x00")                 # CONFIG_KERNEL_XZ (Debian's choice)
    if at >= 0:
        import lzma
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
    else:
        at = data.find(b"\x1f\x8b\x08")             # CONFIG_KERNEL_GZIP
        if at >= 0:
            import zlib
            elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[at:])
    if not elf or elf[:4] != b"\x7fELF":
        return kernel.vmlinuz
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(elf)
    tmp.replace(out)
    return out


# -- running -------------------------------------------------------------------

def job_script(argv, cwd: str, env: dict[str, str]) -> str:
    lines = ["# written by tests/vmlab/harness.py; run chrooted in the VM by init.sh",
             f"cd {shlex.quote(cwd)} || exit 126"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    lines.append(f"{shlex.join(argv)} >/run/vmlab/output 2>&1 </dev/null")
    lines.append("echo $? >/run/vmlab/rc")
    return "\n".join(lines) + "\n"


def qemu_argv(image: Path, initramfs: Path, io_dir: Path, memory_mb: int, cpus: int,
              work: str | None = None) -> list[str]:
    argv = [QEMU, "-accel", "tcg", "-cpu", "max", "-M", "pc", "-m", str(memory_mb), "-smp", str(cpus),
            "-nodefaults", "-no-reboot", "-display", "none", "-nic", "none",
            "-kernel", str(image), "-initrd", str(initramfs),
            "-append", "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off",
            "-serial", f"file:{io_dir / 'console.log'}",
            "-virtfs", "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={io_dir},mount_tag=io,security_model=none,multidevs=remap"]
    if work and work != "/":
        # The job's folder (the checkout) once more, mounted over its own path by init.sh after
        # the VM's private tmpfs: a checkout under /tmp, /run or /var/tmp would be hidden else.
        argv += ["-virtfs", f"local,path={work},mount_tag=work,security_model=none,readonly=on,"
                            f"multidevs=remap"]
    return argv


class Running:
    """A VM started by start(): wait() for its Result, or kill() it."""

    def __init__(self, proc: subprocess.Popen, io_dir: Path, own_dir: bool, timeout: float):
        self.proc, self.io_dir, self.own_dir = proc, io_dir, own_dir
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self._result: Result | None = None

    def done(self) -> bool:
        return self.proc.poll() is not None

    def wait(self) -> Result:
        if self._result is not None:
            return self._result
        note = b""
        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            note = f"\n[vmlab: killed after {self.deadline - self.started:.0f} s]".encode()
        seconds = time.monotonic() - self.started
        io = self.io_dir
        console = _read(io / "console.log") + (self.proc.stdout.read() + note).decode(errors="replace")
        self.proc.stdout.close()
        rc_text = _read(io / "rc").strip()
        boot = re.search(r"vmlab-init: root mounted ([\d.]+) s", console)
        self._result = Result(int(rc_text) if rc_text.isdigit() else None, _read(io / "output"), console,
                              seconds, float(boot.group(1)) if boot else None, io)
        if self.own_dir:
            shutil.rmtree(io, ignore_errors=True)
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


def start(argv, *, cwd: str = "/", env: dict[str, str] | None = None, timeout: float = 600,
          io_dir: Path | None = None, memory_mb: int = 1024, cpus: int = 2, nice: int = 0) -> Running:
    """Boot a fresh VM on this machine's root and start argv in it; returns at once.

    Files the command writes under /run/vmlab land in io_dir (a temporary
    directory, deleted after wait(), when not given). nice > 0 lowers qemu's
    CPU priority: a VM started beside other work takes only what is spare.
    """
    reason = unavailable()
    if reason:
        raise VmLabError(reason)
    kernel, busybox = find_kernel(), find_busybox()
    initramfs = build_initramfs(kernel, busybox)
    image = boot_image(kernel)
    own_dir = io_dir is None
    io_dir = Path(tempfile.mkdtemp(prefix="phoenix-vmlab-")) if own_dir else Path(io_dir)
    io_dir.mkdir(parents=True, exist_ok=True)
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp",
            "LC_ALL": "C", "PYTHONDONTWRITEBYTECODE": "1", "PHOENIX_IN_VM": "1"}
    (io_dir / "job.sh").write_text(job_script(argv, cwd, dict(base, **(env or {}))))
    work = os.path.realpath(cwd)
    (io_dir / "work_path").write_text(work if work != "/" else "")
    for stale in ("output", "rc", "console.log"):
        (io_dir / stale).unlink(missing_ok=True)
    proc = subprocess.Popen(qemu_argv(image, initramfs, io_dir, memory_mb, cpus, work),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=(lambda: os.nice(nice)) if nice > 0 else None)
    return Running(proc, io_dir, own_dir, timeout)


def run(argv, **kw) -> Result:
    """Run argv in a fresh VM on this machine's root and wait: its exit code and output come back."""
    return start(argv, **kw).wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def main(args: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="Run a command in the VM lab (Debian's kernel under qemu TCG).")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--cwd", default=os.getcwd())
    ap.add_argument("argv", nargs="+")
    ns = ap.parse_args(args)
    try:
        r = run(ns.argv, cwd=ns.cwd, timeout=ns.timeout, cpus=ns.cpus)
    except VmLabError as e:
        print(f"vmlab: {e}", file=sys.stderr)
        return 3
    sys.stdout.write(r.output)
    if r.rc is None:
        sys.stderr.write(r.console[-3000:])
    print(f"vmlab: exit {r.rc}, {r.seconds:.1f} s (root mounted at {r.boot_seconds} s uptime)",
          file=sys.stderr)
    return 125 if r.rc is None else r.rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env bash
# Developer entry point: one command to try phoenix-hook anywhere, one to test it.
#   sudo ./dev.sh demo    replay a duplicate-IP outage in a throwaway namespace lab
#   sudo ./dev.sh test    run the whole test suite (lab tests need root); with CI=true
#                         also the tests that touch netaddr/proxmoxer/requests again
#                         under Debian's python3 and Debian's own packages (test-debian)
#   sudo ./dev.sh bench   run the benchmarks (bench/), results in bench/results/
#   ./dev.sh deb          build dist/phoenix-hook_<version>_all.deb (reproducible)
#   ./dev.sh setup        only install what the above need
#   sudo ./dev.sh vmlab   get the VM lab's pieces (qemu, Debian's kernel, busybox-static)
# Everything runs from a virtualenv in .venv; system packages (iproute2,
# arping, arp-scan, nmap, dnsmasq, dhclient, logrotate, perl; arpwatch for bench) come from
# apt when run as root. The demo installs only what it needs: iproute2, python3-venv and the package.
# CI also gets the VM lab (tests/vmlab: VLAN tests on Debian's own kernel under qemu).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${PHOENIX_DEV_VENV:-.venv}
DEBIAN_VENV=${PHOENIX_DEBIAN_VENV:-.venv-debian}
# The tests that reach netaddr, proxmoxer or requests (and the hook naming a
# vendor end to end): run a second time on Debian 12's python3-netaddr 0.8,
# python3-proxmoxer 1.2 and python3-requests 2.28, what a PVE 8 node has.
DEBIAN_TESTS=(tests/test_vendor.py tests/test_pveapi.py tests/test_hostnet.py tests/test_neigh.py
  tests/test_scan_unit.py tests/test_check_unit.py tests/test_audit.py tests/test_preflight.py
  tests/test_reservations.py tests/test_fuzz.py
  tests/test_lab_hook.py::test_kernel_host_holding_the_address_refuses_start
  tests/test_lab_hook.py::test_guest_mode_override
  tests/test_lab_ipv6.py::test_kernel_host_holding_the_ip6_refuses_start)

say() { printf 'dev.sh: %s\n' "$*" >&2; }
# CI is on for any value of $CI but "", "false" and "0" (tests/conftest.py reads it the same way).
is_ci() { case "${CI:-}" in ""|false|False|FALSE|0) return 1 ;; *) return 0 ;; esac; }

# A Debian package is installed (dpkg-query: "installed", not only unpacked).
have_deb() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# What the demo needs: the lab's ip command and a venv for the package.
need_apt_demo() {
  local missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  printf '%s\n' "${missing[@]}"
}

need_apt() {
  local missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v arping >/dev/null || missing+=(iputils-arping)
  command -v arp-scan >/dev/null || missing+=(arp-scan)
  command -v nmap >/dev/null || missing+=(nmap)
  command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
  # the DHCP client of the lease tests (leases, locate): a client only, no service
  command -v dhclient >/dev/null || [ -x /sbin/dhclient ] || missing+=(isc-dhcp-client)
  command -v logrotate >/dev/null || missing+=(logrotate)
  # The watch's PVE notifications run the system perl; its tests use a stand-in PVE::Notify
  # that needs JSON::PP (in Debian's perl, not perl-base).
  perl -MJSON::PP -e 1 2>/dev/null || missing+=(perl)
  # bench/bench_watch.py compares the watch with arpwatch (no test needs it).
  if [ "${PHOENIX_BENCH:-}" = "1" ]; then
    command -v arpwatch >/dev/null || [ -x /usr/sbin/arpwatch ] || missing+=(arpwatch)
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  # The DHCP servers check the reservations output (kea-dhcp4 -t, dhcpd -t) and write the
  # lease files of the leases tests (in namespaces); they are servers, so only CI installs
  # them. Elsewhere those tests skip with a reason.
  if is_ci; then
    command -v kea-dhcp4 >/dev/null || missing+=(kea-dhcp4-server)
    command -v dhcpd >/dev/null || missing+=(isc-dhcp-server)
    # The .deb: lintian checks it, and what it installs runs under Debian's
    # python3 with Debian's own libraries (tests/test_deb.py).
    command -v lintian >/dev/null || missing+=(lintian)
    for p in python3-netaddr python3-proxmoxer python3-requests; do
      have_deb "$p" || missing+=("$p")
    done
  fi
  printf '%s\n' "${missing[@]}"
}

# setup [demo]: the system packages and the venv; "demo" installs the package
# alone (no test tools, no peers), everything else the test extras too.
setup() {
  local missing what=${1:-all} extras='[test]' imports='import phoenix_hook, netaddr, proxmoxer, requests, pytest, hypothesis, responses, jsonschema'
  if [ "$what" = demo ]; then
    missing=$(need_apt_demo)
    extras='' imports='import phoenix_hook, netaddr, proxmoxer, requests'
  else
    missing=$(need_apt)
  fi
  if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      say "installing with apt: $(echo "$missing" | tr '\n' ' ')"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 $missing >/dev/null
    else
      say "missing system packages: $(echo "$missing" | tr '\n' ' ') (run as root to install them with apt)"
    fi
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c "$imports" 2>/dev/null \
     || { [ "$what" != demo ] && [ setup.cfg -nt "$VENV/.installed" ]; }; then
    say "installing phoenix-hook${extras:+ and its test dependencies} into $VENV"
    if ! "$VENV/bin/python" -m pip install -q -e ".$extras" >"$VENV/pip.log" 2>&1; then
      tail -20 "$VENV/pip.log" >&2
      say "pip install failed (full log: $VENV/pip.log)"
      exit 1
    fi
    if [ "$what" != demo ]; then touch "$VENV/.installed"; fi
  fi
  if [ "$what" != demo ] && is_ci; then vmlab; fi
}

# The VM lab (tests/vmlab/harness.py): qemu from apt; Debian's kernel and
# busybox-static downloaded and unpacked into a cache, never installed (no
# initramfs-tools hook runs, nothing lands in /boot, no busybox conflict).
VMLAB_CACHE=${PHOENIX_VMLAB_CACHE:-${XDG_CACHE_HOME:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache}/phoenix-hook/vmlab}

vmlab_unpack() {   # vmlab_unpack <package> <dir under the cache> <file that proves it is there>
  local pkg=$1 dest="$VMLAB_CACHE/$2" tmp
  if compgen -G "$dest/$3" >/dev/null; then return; fi
  say "unpacking $pkg into $dest"
  tmp=$(mktemp -d)
  chmod 755 "$tmp"   # apt-get download works as _apt where it can
  if ! (cd "$tmp" && apt-get download -qq "$pkg" 2>"$tmp/err" >/dev/null) \
     && ! (apt-get update -qq && cd "$tmp" && apt-get download -qq "$pkg" 2>"$tmp/err" >/dev/null); then
    cat "$tmp/err" >&2; rm -rf "$tmp"; say "could not download $pkg"; exit 1
  fi
  rm -rf "$dest.tmp"
  mkdir -p "$VMLAB_CACHE"
  dpkg -x "$tmp"/*.deb "$dest.tmp"
  rm -rf "$dest" "$tmp"
  mv "$dest.tmp" "$dest"
}

vmlab() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    say "the VM lab needs root and apt (qemu-system-x86, linux-image-amd64, busybox-static)"; exit 2
  fi
  if ! command -v qemu-system-x86_64 >/dev/null; then
    say "installing with apt: qemu-system-x86"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
      --no-install-recommends qemu-system-x86 >/dev/null
  fi
  local kpkg
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
  if [ -z "$kpkg" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    kpkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
  fi
  [ -n "$kpkg" ] || { say "apt knows no linux-image-amd64 here"; exit 1; }
  vmlab_unpack "$kpkg" kernel "boot/vmlinuz-*"
  vmlab_unpack busybox-static busybox bin/busybox
}

# A venv over Debian's own python3 and its apt packages (--system-site-packages);
# pip adds only the test tools, held to the Debian versions of the three
# libraries so that nothing (responses wants a newer requests) replaces them.
setup_debian() {
  local constraints
  [ -x /usr/bin/python3 ] || { say "no /usr/bin/python3: the Debian run needs Debian"; exit 1; }
  for p in python3-netaddr python3-proxmoxer python3-requests; do
    have_deb "$p" || { say "$p is not installed (apt install $p, or CI=true ./dev.sh setup as root)"; exit 1; }
  done
  if [ ! -x "$DEBIAN_VENV/bin/python" ]; then
    say "creating $DEBIAN_VENV over Debian's python3 and its packages"
    /usr/bin/python3 -m venv --system-site-packages "$DEBIAN_VENV"
  fi
  constraints="$DEBIAN_VENV/debian-constraints.txt"
  /usr/bin/python3 -I -c 'import netaddr, proxmoxer, requests
for m in (netaddr, proxmoxer, requests): print(f"{m.__name__}=={m.__version__}")' >"$constraints"
  if ! "$DEBIAN_VENV/bin/python" -c 'import pytest, hypothesis, responses, jsonschema' 2>/dev/null; then
    say "installing the test tools into $DEBIAN_VENV (pip, constrained to $(tr '\n' ' ' <"$constraints"))"
    if ! "$DEBIAN_VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" \
         pytest hypothesis responses jsonschema >"$DEBIAN_VENV/pip.log" 2>&1; then
      tail -20 "$DEBIAN_VENV/pip.log" >&2
      say "pip install failed (full log: $DEBIAN_VENV/pip.log)"
      exit 1
    fi
  fi
  "$DEBIAN_VENV/bin/python" -c 'import sys, netaddr, proxmoxer, requests
bad = [f"{m.__name__} from {m.__file__}" for m in (netaddr, proxmoxer, requests)
       if not m.__file__.startswith("/usr/lib/python3/dist-packages/")]
sys.exit("not Debian'"'"'s: " + ", ".join(bad) if bad else 0)'
}

test_debian() {
  setup_debian
  say "again under Debian's python3 with $(tr '\n' ' ' <"$DEBIAN_VENV/debian-constraints.txt")"
  local rc=0
  if [ $# -eq 0 ]; then set -- -q "${DEBIAN_TESTS[@]}"; fi
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$DEBIAN_VENV/bin/python" -m pytest -p no:cacheprovider "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then say "pytest collected no tests: that is a failure"; rc=1; fi
  return "$rc"
}

case "${1:-help}" in
  setup) setup ;;
  vmlab) vmlab ;;
  demo) setup demo; shift; exec "$VENV/bin/phoenix-hook" demo "$@" ;;
  test)
    setup; shift
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then say "pytest collected no tests: that is a failure"; rc=1; fi
    if is_ci && [ "${PHOENIX_DEBIAN_RUN:-1}" != 0 ]; then
      test_debian || rc=$((rc ? rc : 1))
    fi
    exit "$rc" ;;
  test-debian) shift; test_debian "$@" ;;
  deb)
    shift
    command -v dpkg-deb >/dev/null || { say "dpkg-deb not found: build the .deb on Debian"; exit 3; }
    # Reproducible: the time of the last commit stamps every file (without git,
    # build_deb.py takes the changelog's date).
    if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
      SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
      export SOURCE_DATE_EPOCH
    fi
    exec python3 -B packaging/build_deb.py "$@" ;;
  bench)
    PHOENIX_BENCH=1 setup; shift
    for b in bench/bench_*.py; do say "running $b"; "$VENV/bin/python" "$b" "$@"; done ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# Developer entry point: one command to try phoenix-hook anywhere, one to test it.
#   sudo ./dev.sh demo    replay a duplicate-IP outage in a throwaway namespace lab
#   sudo ./dev.sh test    run the whole test suite (lab tests need root)
#   sudo ./dev.sh bench   run the benchmarks (bench/), results in bench/results/
#   ./dev.sh setup        only install what the above need
# Everything runs from a virtualenv in .venv; system packages (iproute2,
# arping, arp-scan, nmap, dnsmasq, dhclient, logrotate, perl; arpwatch for bench) come from
# apt when run as root. The demo installs only what it needs: iproute2, python3-venv and the package.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${PHOENIX_DEV_VENV:-.venv}

say() { printf 'dev.sh: %s\n' "$*" >&2; }
# CI is on for any value of $CI but "", "false" and "0" (tests/conftest.py reads it the same way).
is_ci() { case "${CI:-}" in ""|false|False|FALSE|0) return 1 ;; *) return 0 ;; esac; }

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
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
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
}

case "${1:-help}" in
  setup) setup ;;
  demo) setup demo; shift; exec "$VENV/bin/phoenix-hook" demo "$@" ;;
  test)
    setup; shift
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then say "pytest collected no tests: that is a failure"; exit 1; fi
    exit "$rc" ;;
  bench)
    PHOENIX_BENCH=1 setup; shift
    for b in bench/bench_*.py; do say "running $b"; "$VENV/bin/python" "$b" "$@"; done ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac

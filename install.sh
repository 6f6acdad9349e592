#!/usr/bin/env bash
# install.sh: install phoenix-hook on a Proxmox VE node, attach it to guests,
# or take it all away again (--uninstall).  Run it as root on every node whose
# guests should be guarded.  `./install.sh --help` says everything.
#
# PVE facts this script follows (pve-guest-common GuestHelpers.pm,
# pve-container LXC/Config.pm, qemu-server API2/Qemu.pm):
# - a guest has ONE hookscript, a volid on a storage with `snippets` content;
# - `pct set`/`qm set --hookscript` refuses a script that does not exist or is
#   not executable (check_hookscript), so the snippet is written first;
# - a pre-start whose hookscript is missing fails the start, so --uninstall
#   detaches every guest before it removes the snippet and the venv.
# With the Debian package phoenix-hook installed (dpkg-query says so), the
# hookscript is the package's (/usr/share/phoenix-hook, #!/usr/bin/python3 -I)
# and there is no venv: this script then only writes the snippet and attaches.
set -euo pipefail

readonly ME="phoenix-hook install"
readonly EXIT_FAILED=1 EXIT_USAGE=2 EXIT_NOT_ROOT=3 EXIT_NOT_PVE=4 EXIT_SKIPPED=5
readonly SNIPPET_NAME=phoenix-hook.py

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PREFIX=${PHOENIX_PREFIX:-/opt/phoenix-hook}
BINDIR=${PHOENIX_BINDIR:-/usr/local/bin}
ETC=${PHOENIX_ETC:-/etc/phoenix-hook}
PYTHON=${PHOENIX_PYTHON:-python3}
PKG_SHARE=${PHOENIX_PKG_SHARE:-/usr/share/phoenix-hook}
VENV_ARGS=() PIP_ARGS=()
read -r -a VENV_ARGS <<<"${PHOENIX_VENV_ARGS:-}"
read -r -a PIP_ARGS <<<"${PHOENIX_PIP_ARGS:-}"

usage() {
  cat <<EOF
Usage: ./install.sh [--storage NAME] [--attach VMID... | --attach all [--vms]] [--chain]
       ./install.sh --uninstall
       ./install.sh --help

Installs phoenix-hook on this Proxmox VE node (run as root, on every node):
  - a venv at $PREFIX/venv with this checkout pip-installed into it,
    and the command $BINDIR/phoenix-hook (a symlink into the venv);
    with the Debian package phoenix-hook installed, neither: the package
    has the command and the code, and the hookscript comes from
    $PKG_SHARE (a venv of an earlier install is removed);
  - the hookscript STORAGE:snippets/$SNIPPET_NAME (the storage gets
    'snippets' content enabled if it lacks it; its other content is kept);
  - $ETC/phoenix-hook.conf with every setting commented out, only if
    no such file exists yet (your edits are never overwritten).
Running it again updates the installation and changes nothing else.

Options:
  --storage NAME  snippets storage for the hookscript (default: local)
  --attach VMID...
                  attach the hookscript to these containers (after installing)
                  with pct set VMID --hookscript STORAGE:snippets/$SNIPPET_NAME
  --attach all    attach it to every container on this node (pct list)
  --vms           also accept VMs: 'all' includes every VM (qm list), and a
                  VMID that is not a container is looked up with qm
  --chain         a guest that already has another hookscript gets ours too;
                  ours runs the previous one after itself in every phase.
                  Without --chain such a guest is never touched: it is listed
                  and the exit code is 5.
  --uninstall     give every guest back the hookscript it had before (or none),
                  detach phoenix-hook from guests that carry it without a
                  record (e.g. clones), then remove the snippet, the command,
                  the venv and the state. Keeps $ETC/phoenix-hook.conf and the
                  decision log. If a guest cannot be restored, nothing is
                  removed (its start still needs the venv); fix and rerun.
  -h, --help      this text

Exit codes:
  0  done
  1  a step failed (the message names it); other guests were still handled
  2  bad usage
  3  not run as root
  4  this is not a Proxmox VE node (pct or pvesm missing)
  5  done, but some guests have another hookscript and were not attached
     (they are listed; rerun with --chain to attach them anyway)

Files: $ETC/state/install (where things were installed),
       $ETC/state/guests/VMID (what each attached guest had before),
       $ETC/chain/VMID (volid= and path= of a chained previous hookscript).

Environment (for tests and unusual layouts): PHOENIX_PREFIX, PHOENIX_BINDIR,
PHOENIX_ETC, PHOENIX_PKG_SHARE (the package's files, default
/usr/share/phoenix-hook), PHOENIX_PYTHON (creates the venv, default python3),
PHOENIX_VENV_ARGS (extra 'python3 -m venv' arguments, e.g.
--system-site-packages), PHOENIX_PIP_ARGS (extra 'pip install' arguments,
e.g. --no-deps --no-index). The hook itself reads
/etc/phoenix-hook/phoenix-hook.conf unless PHOENIX_HOOK_CONF is set, so a
non-default PHOENIX_ETC is for tests only.
EOF
}

say() { printf '%s: %s\n' "$ME" "$*"; }
warn() { printf '%s: %s\n' "$ME" "$*" >&2; }
die() { local code=$1; shift; warn "$*"; exit "$code"; }
usage_error() { die "$EXIT_USAGE" "$* (see --help)"; }

# --- arguments -------------------------------------------------------------
STORAGE=local
ATTACH=()
CHAIN=0 VMS=0 UNINSTALL=0
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --storage)
      (($# >= 2)) || usage_error "--storage needs a storage name"
      STORAGE=$2; shift 2; continue ;;
    --storage=*) STORAGE=${1#*=} ;;
    --attach)
      shift
      [[ $# -gt 0 && $1 != -* ]] || usage_error "--attach needs VMIDs or 'all'"
      while (($#)) && [[ $1 != -* ]]; do ATTACH+=("$1"); shift; done
      continue ;;
    --chain) CHAIN=1 ;;
    --vms) VMS=1 ;;
    --uninstall) UNINSTALL=1 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
  shift
done

[[ $STORAGE =~ ^[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]$ ]] ||
  usage_error "'$STORAGE' is not a storage name"
ATTACH_ALL=0
for id in ${ATTACH[@]+"${ATTACH[@]}"}; do
  if [[ $id == all ]]; then
    ATTACH_ALL=1
  elif ! [[ $id =~ ^[1-9][0-9]{2,8}$ ]]; then
    usage_error "'$id' is not a guest ID (100..999999999) or 'all'"
  fi
done
((ATTACH_ALL == 0 || ${#ATTACH[@]} == 1)) || usage_error "use either '--attach all' or VMIDs, not both"
if ((UNINSTALL)); then
  ((${#ATTACH[@]} == 0 && CHAIN == 0 && VMS == 0)) ||
    usage_error "--uninstall takes no --attach, --chain or --vms"
else
  ((${#ATTACH[@]} > 0 || (CHAIN == 0 && VMS == 0))) ||
    usage_error "--chain and --vms only make sense with --attach"
fi

# --- preconditions ---------------------------------------------------------
[[ $(id -u) == 0 ]] || die "$EXIT_NOT_ROOT" "must run as root (try: sudo $0)"
for tool in pct pvesm; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$EXIT_NOT_PVE" "this is not a Proxmox VE node ('$tool' not found)"
done

VENV=$PREFIX/venv
VOLID=$STORAGE:snippets/$SNIPPET_NAME
STATE=$ETC/state
GUEST_STATE=$STATE/guests
CHAIN_DIR=$ETC/chain
CONF=$ETC/phoenix-hook.conf
CONF_SRC=$REPO_DIR/conf/phoenix-hook.conf
HOOK_SRC=$REPO_DIR/hookscripts/phoenix-hook.py
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT
FAILED=0
SKIPPED=()

# --- small helpers ---------------------------------------------------------
# The Debian package is installed (not only unpacked, not removed).
package_installed() {
  command -v dpkg-query >/dev/null 2>&1 &&
    [[ $(dpkg-query -W -f='${db:Status-Status}' phoenix-hook 2>/dev/null) == installed ]]
}

# The value of KEY in a key=value file (empty if absent).  No eval, no source.
read_kv() {
  local file=$1 key=$2 line
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line == "$key="* ]]; then printf '%s\n' "${line#*=}"; return 0; fi
  done <"$file"
}

# Write lines to FILE atomically (a reader never sees half a file).
write_lines() {
  local file=$1 tmp; shift
  mkdir -p "$(dirname "$file")"
  tmp=$(mktemp "$file.XXXXXX")
  printf '%s\n' "$@" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$file"
}

# The VMIDs in the output of `pct list` / `qm list` (header line skipped).
list_vmids() { awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }' "$1"; }

tool_for() { if [[ $1 == vm ]]; then echo qm; else echo pct; fi; }
label_for() { if [[ $1 == vm ]]; then echo VM; else echo CT; fi; }

# Look a guest up: sets G_KIND (ct|vm) and G_HOOK (its hookscript volid, or
# empty).  KIND_HINT may be ct, vm or empty (try pct, then qm with --vms).
# Returns 1 when the guest is not on this node.
G_KIND='' G_HOOK=''
read_guest() {
  local vmid=$1 hint=${2:-} kinds=() kind out
  if [[ -n $hint ]]; then
    kinds=("$hint")
  else
    kinds=(ct)
    if ((VMS)) && command -v qm >/dev/null 2>&1; then kinds+=(vm); fi
  fi
  for kind in "${kinds[@]}"; do
    if out=$("$(tool_for "$kind")" config "$vmid" 2>"$TMPD/err"); then
      G_KIND=$kind
      # Only the lines before the first [section] are the current config.
      G_HOOK=$(printf '%s\n' "$out" | awk '/^\[/ { exit } /^hookscript: / { print $2; exit }')
      return 0
    fi
  done
  return 1
}

# --- install steps ---------------------------------------------------------
install_venv() {
  command -v "$PYTHON" >/dev/null 2>&1 ||
    die "$EXIT_FAILED" "'$PYTHON' not found; install it: apt install python3-venv"
  # Reuse a working venv; rebuild one whose interpreter is gone (e.g. after
  # a Debian release upgrade replaced python3.X).
  if [[ -d $VENV ]] && ! "$VENV/bin/python3" -c 'import sys' >/dev/null 2>&1; then
    say "the venv at $VENV is broken; creating it again"
    rm -rf "$VENV"
  fi
  if [[ ! -d $VENV ]]; then
    mkdir -p "$PREFIX"
    if ! "$PYTHON" -m venv ${VENV_ARGS[@]+"${VENV_ARGS[@]}"} "$VENV" >"$TMPD/venv.log" 2>&1; then
      cat "$TMPD/venv.log" >&2
      rm -rf "$VENV"
      die "$EXIT_FAILED" "could not create a venv at $VENV (on Debian: apt install python3-venv)"
    fi
  fi
  say "installing $REPO_DIR into $VENV (pip)"
  if ! "$VENV/bin/python3" -m pip install --disable-pip-version-check --quiet \
    ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$REPO_DIR" >"$TMPD/pip.log" 2>&1; then
    tail -n 20 "$TMPD/pip.log" >&2
    die "$EXIT_FAILED" "pip install of $REPO_DIR into $VENV failed (output above)"
  fi
  [[ -x $VENV/bin/phoenix-hook ]] ||
    die "$EXIT_FAILED" "pip did not install the 'phoenix-hook' command into $VENV/bin"
}

install_command() {
  local link=$BINDIR/phoenix-hook
  if [[ -e $link && ! -L $link ]]; then
    die "$EXIT_FAILED" "$link exists and is not our symlink; move it away and rerun"
  fi
  mkdir -p "$BINDIR"
  ln -sfn "$VENV/bin/phoenix-hook" "$link"
}

# Make sure STORAGE may hold snippets; keep every content type it has.
ensure_snippets_content() {
  local json content
  if ! json=$(pvesh get "/storage/$STORAGE" --output-format json 2>"$TMPD/err"); then
    die "$EXIT_FAILED" "cannot read storage '$STORAGE': $(head -n1 "$TMPD/err") (choose one with --storage)"
  fi
  # "content" is a comma-separated list of [a-z] words (PVE encodes the
  # content hash that way in API2/Storage/Config.pm); "content-dirs" must
  # not match, hence the quote right after the key.
  content=$(printf '%s\n' "$json" |
    sed -n 's/.*"content"[[:space:]]*:[[:space:]]*"\([a-z,]*\)".*/\1/p' | head -n1)
  [[ -n $content ]] ||
    die "$EXIT_FAILED" "cannot tell the content types of storage '$STORAGE'; enable snippets yourself (pvesm set $STORAGE --content <its list>,snippets) and rerun"
  case ,$content, in *,snippets,*) return 0 ;; esac
  say "storage '$STORAGE' has no 'snippets' content (it has $content); enabling it"
  # 'none' cannot be combined with other content types.
  if [[ $content == none ]]; then content=snippets; else content=$content,snippets; fi
  pvesm set "$STORAGE" --content "$content" ||
    die "$EXIT_FAILED" "could not enable snippets on storage '$STORAGE'; choose another with --storage"
}

SNIPPET_PATH=''
install_snippet() {
  local src=$HOOK_SRC tmp first
  [[ -f $src ]] || die "$EXIT_FAILED" "$src is missing; run install.sh from a complete checkout"
  SNIPPET_PATH=$(pvesm path "$VOLID" 2>"$TMPD/err") ||
    die "$EXIT_FAILED" "cannot resolve $VOLID: $(head -n1 "$TMPD/err")"
  [[ $SNIPPET_PATH == /* ]] || die "$EXIT_FAILED" "pvesm path $VOLID gave '$SNIPPET_PATH', not a path"
  mkdir -p "$(dirname "$SNIPPET_PATH")"
  tmp=$(mktemp "$(dirname "$SNIPPET_PATH")/.$SNIPPET_NAME.XXXXXX")
  IFS= read -r first <"$src" || true
  if ((PACKAGE)); then
    cat "$src" >"$tmp"          # the package's own: #!/usr/bin/python3 -I
  else
    {
      printf '#!%s\n' "$VENV/bin/python3"
      # Replace the source's shebang; a source without one keeps line 1.
      if [[ $first == '#!'* ]]; then tail -n +2 "$src"; else cat "$src"; fi
    } >"$tmp"
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$SNIPPET_PATH"
  say "hookscript $VOLID written to $SNIPPET_PATH"
}

install_settings() {
  mkdir -p "$ETC"
  if [[ -e $CONF ]]; then
    say "kept the existing settings file $CONF"
    return 0
  fi
  [[ -f $CONF_SRC ]] || die "$EXIT_FAILED" "$CONF_SRC is missing; run install.sh from a complete checkout"
  cp "$CONF_SRC" "$TMPD/conf"
  chmod 0644 "$TMPD/conf"
  mv -f "$TMPD/conf" "$CONF"
  say "wrote the default settings file $CONF"
}

# Attach our hookscript to one guest, following the rules in --help.
attach_guest() {
  local vmid=$1 hint=${2:-} label tool prev_path state_file=$GUEST_STATE/$1
  if ! read_guest "$vmid" "$hint"; then
    if ((VMS)); then
      warn "guest $vmid does not exist on this node; not attached"
    else
      warn "CT $vmid does not exist on this node; not attached (a VM needs --vms)"
    fi
    FAILED=1
    return 0
  fi
  label=$(label_for "$G_KIND")
  tool=$(tool_for "$G_KIND")

  if [[ $G_HOOK == "$VOLID" ]]; then
    if [[ ! -f $state_file ]]; then
      # Attached by hand or cloned from an attached guest: record it so that
      # --uninstall detaches it (or restores a chain we find).
      write_lines "$state_file" "type=$G_KIND" "attached=$VOLID" \
        "previous=$(read_kv "$CHAIN_DIR/$vmid" volid)"
    fi
    say "$label $vmid already uses $VOLID"
    return 0
  fi

  if [[ -n $G_HOOK ]]; then
    if ((!CHAIN)); then
      say "$label $vmid already has hookscript $G_HOOK; not attached (use --chain to run it after phoenix-hook)"
      SKIPPED+=("$vmid")
      return 0
    fi
    if [[ $G_HOOK == *:snippets/"$SNIPPET_NAME" ]]; then
      warn "$label $vmid uses phoenix-hook from another storage ($G_HOOK); not chained to itself (run --uninstall first)"
      FAILED=1
      return 0
    fi
    if ! prev_path=$(pvesm path "$G_HOOK" 2>"$TMPD/err"); then
      warn "$label $vmid: cannot resolve its hookscript $G_HOOK: $(head -n1 "$TMPD/err"); not attached"
      FAILED=1
      return 0
    fi
    # The chain file exists before the guest carries our hook, so the hook
    # never runs without knowing what it must run next.
    write_lines "$CHAIN_DIR/$vmid" "volid=$G_HOOK" "path=$prev_path"
  fi
  write_lines "$state_file" "type=$G_KIND" "attached=$VOLID" "previous=$G_HOOK"
  if ! "$tool" set "$vmid" --hookscript "$VOLID"; then
    rm -f "$state_file" "$CHAIN_DIR/$vmid"
    warn "$tool set $vmid --hookscript $VOLID failed; $label $vmid unchanged"
    FAILED=1
    return 0
  fi
  if [[ -n $G_HOOK ]]; then
    say "$label $vmid: attached $VOLID; it runs the previous hookscript $G_HOOK after itself"
  else
    say "$label $vmid: attached $VOLID"
  fi
}

attach_requested() {
  local vmid ids=()
  if ((ATTACH_ALL)); then
    pct list >"$TMPD/list" || die "$EXIT_FAILED" "pct list failed"
    mapfile -t ids < <(list_vmids "$TMPD/list")
    for vmid in ${ids[@]+"${ids[@]}"}; do attach_guest "$vmid" ct; done
    if ((VMS)); then
      command -v qm >/dev/null 2>&1 || die "$EXIT_NOT_PVE" "this is not a Proxmox VE node ('qm' not found)"
      qm list >"$TMPD/list" || die "$EXIT_FAILED" "qm list failed"
      mapfile -t ids < <(list_vmids "$TMPD/list")
      for vmid in ${ids[@]+"${ids[@]}"}; do attach_guest "$vmid" vm; done
    fi
  else
    # Sorted and de-duplicated: attaching twice is attaching once.
    mapfile -t ids < <(printf '%s\n' "${ATTACH[@]}" | sort -n -u)
    for vmid in "${ids[@]}"; do attach_guest "$vmid"; done
  fi
}

# The package replaces a venv install: once the snippet runs Debian's
# python3, the venv and its command link (as recorded) are not needed.
remove_old_venv() {
  local prefix bindir venv link
  [[ $(read_kv "$STATE/install" mode) != package ]] || return 0
  prefix=$(read_kv "$STATE/install" prefix)
  bindir=$(read_kv "$STATE/install" bindir)
  [[ -n $prefix ]] || return 0
  venv=$prefix/venv link=${bindir:-$BINDIR}/phoenix-hook
  if [[ -L $link && $(readlink "$link") == "$venv/"* ]]; then
    rm -f "$link"
    say "removed $link (the package's /usr/bin/phoenix-hook replaces it)"
  fi
  if [[ -d $venv ]]; then
    rm -rf "$venv"
    rmdir "$prefix" 2>/dev/null || true
    say "removed the venv $venv: the hookscript now runs the phoenix-hook package"
  fi
}

do_install() {
  if ((PACKAGE)); then
    say "the phoenix-hook package is installed: using its hookscript and Debian's python3 (no venv)"
  else
    install_venv
    install_command
  fi
  ensure_snippets_content
  install_snippet
  install_settings
  if ((PACKAGE)); then
    remove_old_venv
    write_lines "$STATE/install" "mode=package" "storage=$STORAGE" "volid=$VOLID" "snippet=$SNIPPET_PATH"
    say "installed: hookscript $VOLID from the phoenix-hook package"
  else
    write_lines "$STATE/install" "mode=venv" "storage=$STORAGE" "volid=$VOLID" \
      "snippet=$SNIPPET_PATH" "prefix=$PREFIX" "bindir=$BINDIR"
    say "installed: $BINDIR/phoenix-hook -> $VENV/bin/phoenix-hook"
  fi
  if ((${#ATTACH[@]})); then attach_requested; fi
  if ((FAILED)); then exit "$EXIT_FAILED"; fi
  if ((${#SKIPPED[@]})); then
    say "not attached because they have another hookscript: ${SKIPPED[*]} (rerun with --chain to attach them anyway)"
    exit "$EXIT_SKIPPED"
  fi
}

# --- uninstall -------------------------------------------------------------
# Give one recorded guest back what it had before.  Returns 1 if the guest
# still carries our hookscript afterwards.
restore_guest() {
  local vmid=$1 kind prev label tool file=$GUEST_STATE/$1
  kind=$(read_kv "$file" type)
  prev=$(read_kv "$file" previous)
  [[ $kind == vm ]] || kind=ct
  label=$(label_for "$kind")
  tool=$(tool_for "$kind")
  if ! command -v "$tool" >/dev/null 2>&1 || ! read_guest "$vmid" "$kind"; then
    say "$label $vmid no longer exists on this node; nothing to restore"
  elif [[ $G_HOOK != "$VOLID" ]]; then
    say "$label $vmid no longer uses $VOLID (hookscript: ${G_HOOK:-none}); left as it is"
  elif [[ -n $prev ]]; then
    if ! "$tool" set "$vmid" --hookscript "$prev"; then
      warn "$label $vmid: could not restore its hookscript $prev; it keeps phoenix-hook"
      return 1
    fi
    say "$label $vmid: hookscript $prev restored"
  else
    if ! "$tool" set "$vmid" --delete hookscript; then
      warn "$label $vmid: could not remove its hookscript; it keeps phoenix-hook"
      return 1
    fi
    say "$label $vmid: hookscript removed (it had none before)"
  fi
  rm -f "$file" "$CHAIN_DIR/$vmid"
}

# Guests that carry our volid without a record (attached by hand, cloned from
# an attached guest): their next start would fail once the snippet is gone.
detach_unrecorded() {
  local kind vmid tool label ids=()
  for kind in ct vm; do
    tool=$(tool_for "$kind")
    command -v "$tool" >/dev/null 2>&1 || continue
    "$tool" list >"$TMPD/list" 2>/dev/null || continue
    mapfile -t ids < <(list_vmids "$TMPD/list")
    for vmid in ${ids[@]+"${ids[@]}"}; do
      [[ -f $GUEST_STATE/$vmid ]] && continue
      read_guest "$vmid" "$kind" || continue
      [[ $G_HOOK == "$VOLID" ]] || continue
      label=$(label_for "$kind")
      if "$tool" set "$vmid" --delete hookscript; then
        say "$label $vmid used $VOLID without a record (a clone?); hookscript removed"
      else
        warn "$label $vmid: could not remove its hookscript $VOLID; it keeps phoenix-hook"
        FAILED=1
      fi
    done
  done
}

do_uninstall() {
  local f vmid snippet link recorded
  recorded=$(read_kv "$STATE/install" storage)
  if [[ -n $recorded ]]; then STORAGE=$recorded; VOLID=$STORAGE:snippets/$SNIPPET_NAME; fi
  recorded=$(read_kv "$STATE/install" prefix); [[ -z $recorded ]] || PREFIX=$recorded
  recorded=$(read_kv "$STATE/install" bindir); [[ -z $recorded ]] || BINDIR=$recorded
  VENV=$PREFIX/venv

  if [[ -d $GUEST_STATE ]]; then
    for f in "$GUEST_STATE"/*; do
      [[ -f $f ]] || continue
      vmid=${f##*/}
      [[ $vmid =~ ^[0-9]+$ ]] || continue
      restore_guest "$vmid" || FAILED=1
    done
  fi
  detach_unrecorded
  if ((FAILED)); then
    die "$EXIT_FAILED" "some guests still use $VOLID; kept the snippet, the venv and the state (fix the cause, e.g. a lock, and rerun --uninstall)"
  fi

  snippet=$(read_kv "$STATE/install" snippet)
  [[ -n $snippet ]] || snippet=$(pvesm path "$VOLID" 2>/dev/null) || snippet=''
  if [[ -n $snippet && -f $snippet ]]; then
    rm -f "$snippet"
    say "removed the hookscript $snippet"
  fi
  # A package install has no venv of its own: one at the default prefix is not ours.
  if [[ $(read_kv "$STATE/install" mode) != package ]]; then
    link=$BINDIR/phoenix-hook
    if [[ -L $link && $(readlink "$link") == "$VENV/"* ]]; then
      rm -f "$link"
      say "removed $link"
    fi
    if [[ -d $VENV ]]; then
      rm -rf "$VENV"
      say "removed $VENV"
    fi
    rmdir "$PREFIX" 2>/dev/null || true
  fi
  rm -rf "$STATE" "$CHAIN_DIR"
  if package_installed; then
    say "the phoenix-hook package stays installed; remove it with: apt remove phoenix-hook"
  fi
  say "kept $CONF (your settings) and the decision log (log_file, default /var/log/phoenix-hook/); remove them by hand if you want"
}

PACKAGE=0
if package_installed && [[ -f $PKG_SHARE/hookscripts/phoenix-hook.py ]]; then
  PACKAGE=1
  HOOK_SRC=$PKG_SHARE/hookscripts/phoenix-hook.py
  [[ -f $CONF_SRC ]] || CONF_SRC=$PKG_SHARE/conf/phoenix-hook.conf
fi
if ((UNINSTALL)); then do_uninstall; else do_install; fi
exit 0

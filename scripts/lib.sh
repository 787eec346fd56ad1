# shellcheck shell=bash
# Shared by scripts/dev and scripts/test (sourced, not run): Debian packages and the venv.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO_ROOT/.venv"
# Service binaries live in sbin on Debian; a non-root PATH may lack it.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "this needs root: $*"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 \
    || die "missing $*; install it with this system's package manager and run again"
  log "installing $* (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# ensure_apt BINARY:PACKAGE... — install, in one apt-get run, the packages whose binary is missing.
ensure_apt() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 && continue
    [[ " ${missing[*]} " == *" ${pair#*:} "* ]] || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# Sets PY to a Python >= 3.11 that can make a venv: $PYTHON if set, else python3.
find_python() {
  PY=${PYTHON:-python3}
  [ -n "${PYTHON:-}" ] || ensure_apt python3:python3
  command -v "$PY" >/dev/null 2>&1 || die "$PY not found; set PYTHON to a Python >= 3.11"
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python >= 3.11 is needed, but $PY is $("$PY" -V 2>&1); set PYTHON to a newer one"
  # Debian ships venv's pip bootstrap in a separate package.
  "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
}

# ensure_venv [EXTRAS] — ./.venv with this project installed editable (with [EXTRAS]) under
# constraints.txt: made when missing or older than 3.11, reinstalled when pyproject.toml or
# constraints.txt changed since the last install of the same EXTRAS (stamp file in .venv).
ensure_venv() {
  local extras=${1:-} spec=. stamp want
  [ -z "$extras" ] || spec=".[$extras]"
  stamp="$VENV/.naboom-installed${extras:+-$extras}"
  if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    find_python
    log "creating .venv with $("$PY" -V 2>&1)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
  want=$(cd "$REPO_ROOT" && cat pyproject.toml constraints.txt | cksum)
  [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || return 0
  log "installing $spec into .venv (pip, pinned by constraints.txt)"
  (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install -q -c constraints.txt -e "$spec")
  printf '%s\n' "$want" >"$stamp"
}

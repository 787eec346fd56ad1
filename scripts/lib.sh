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

# ensure_venv [EXTRAS] — ./.venv with this project (with [EXTRAS]) and the device simulator
# (firmware-sim/) installed editable under constraints.txt: made when missing or older than 3.11,
# reinstalled when either pyproject.toml or constraints.txt changed since the last install of the
# same EXTRAS (stamp file in .venv).
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
  want=$(cd "$REPO_ROOT" && cat pyproject.toml firmware-sim/pyproject.toml constraints.txt | cksum)
  [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || return 0
  log "installing $spec and ./firmware-sim into .venv (pip, pinned by constraints.txt)"
  (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install -q -c constraints.txt -e "$spec" -e ./firmware-sim)
  printf '%s\n' "$want" >"$stamp"
}

# --- Services on loopback (PostgreSQL, Redis, Mosquitto), started as the project's machines start
# them; used by scripts/test and bench/run.
pg_up() { pg_isready -q -h 127.0.0.1; }
pg_cluster() { as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main "$1"; }
pg_start() { pg_cluster start; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 ping 2>/dev/null)" = PONG ]; }
redis_start() {
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}
mosquitto_up() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
mosquitto_start() {
  # Debian's config writes its pid file here; a fresh container may not have the folder yet.
  [ -d /run/mosquitto ] || as_root install -d -o mosquitto -g mosquitto /run/mosquitto
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf
}

# ensure_service NAME — run NAME_start unless NAME_up succeeds, then wait for NAME_up (30 s at most).
ensure_service() {
  local name=$1 i
  "${name}_up" && return 0
  log "starting $name"
  "${name}_start" || log "$name: the start command failed; waiting for it anyway"
  for ((i = 0; i < 60; i++)); do
    "${name}_up" && return 0
    sleep 0.5
  done
  die "$name does not answer on 127.0.0.1 after 30 s"
}

# The tests log in as postgres over TCP without a password (tests/support.py), as on the
# project's machines (trust on loopback). A freshly installed cluster asks for a password.
pg_allow_loopback() {
  local hba pg_admin=${NABOOM_TEST_PG:-postgresql://postgres@127.0.0.1:5432/postgres}
  if ! psql -qAtc 'select 1' "$pg_admin" >/dev/null 2>&1; then
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf)
    log "PostgreSQL refuses postgres@127.0.0.1: allowing loopback logins without password in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_cluster reload
    psql -qAtc 'select 1' "$pg_admin" >/dev/null || die "PostgreSQL still refuses postgres@127.0.0.1"
  fi
}

# --- The control-room monitor (frontend/): Node.js, its packages, its build.
FRONTEND="$REPO_ROOT/frontend"

# ensure_node — node >= 20 and npm; Debian's packages when missing (NodeSource's nodejs brings npm along).
ensure_node() {
  ensure_apt node:nodejs
  ensure_apt npm:npm
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] \
    || die "the monitor needs Node.js >= 20, but node is $(node -v); install a newer one and run again"
}

# ensure_node_modules — frontend/node_modules from `npm ci`, again whenever package-lock.json
# changed since the last install (stamp file in node_modules).
ensure_node_modules() {
  local stamp="$FRONTEND/node_modules/.naboom-installed" want
  want=$(cksum <"$FRONTEND/package-lock.json")
  [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || return 0
  log "installing the monitor's node packages (npm ci)"
  (cd "$FRONTEND" && npm ci --no-audit --no-fund)
  printf '%s\n' "$want" >"$stamp"
}

# monitor_stale — true when frontend/dist is missing or a source file is newer than its index.html
# (node_modules, the build itself, tests and notes do not count).
monitor_stale() {
  local index="$FRONTEND/dist/index.html"
  [ -f "$index" ] || return 0
  [ -n "$(find "$FRONTEND" \( -path "$FRONTEND/node_modules" -o -path "$FRONTEND/dist" -o -path "$FRONTEND/scripts" \) \
    -prune -o -type f \
    ! -name '*.spec.ts' ! -name '*.md' ! -name '*.tsbuildinfo' -newer "$index" -print -quit)" ]
}

# build_monitor — `npm run build` (type check, then Vite) into frontend/dist.
build_monitor() {
  log "building the monitor (npm run build)"
  (cd "$FRONTEND" && npm run --silent build)
}

# ensure_monitor — node, packages and a build of the monitor that is not older than its sources.
ensure_monitor() {
  ensure_node
  ensure_node_modules
  if monitor_stale; then build_monitor; fi
}

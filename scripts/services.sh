#!/usr/bin/env bash
# Makes sure the local services Herald and its tests need are there and running:
#
#   - the Rust toolchain (cargo): only checked, never downloaded;
#   - PostgreSQL answering on 127.0.0.1:5432, where the role `postgres` can log in
#     over TCP with the password `postgres`;
#   - NATS with JetStream answering on 127.0.0.1:4222.
#
# Missing servers are installed from Debian's packages (apt-get) and started; that
# needs root or sudo. The script is idempotent and prints nothing when all is fine.
#
#   bash scripts/services.sh          # run it
#   source scripts/services.sh        # from another bash script (run.sh, test.sh)
#
# Environment:
#   HERALD_SKIP_SERVICES=1          leave PostgreSQL and NATS alone (you run your own)
#   HERALD_SERVICES_DEFINE_ONLY=1   when sourced: only define the functions, run nothing
#                                   (to test them: the HERALD_SVC_* settings below can then
#                                   be changed, e.g. to another port or cluster name)
#
# Everything below is a function, so that sourcing it from a shell with or without
# `set -euo pipefail` behaves the same: failures are returned, never `exit`ed.

HERALD_SVC_PG_HOST=127.0.0.1
HERALD_SVC_PG_PORT=5432
HERALD_SVC_PG_CLUSTER=main
HERALD_SVC_PG_LIB=/usr/lib/postgresql
HERALD_SVC_PG_ETC=/etc/postgresql
HERALD_SVC_NATS_HOST=127.0.0.1
HERALD_SVC_NATS_PORT=4222
HERALD_SVC_NATS_STORE=/var/lib/nats-server
HERALD_SVC_NATS_LOG=/var/log/nats-server.log
HERALD_SVC_NATS_PIDFILE=/run/herald-nats-server.pid
HERALD_SVC_WAIT_SECONDS=${HERALD_SVC_WAIT_SECONDS:-60}
_hs_apt_updated=${_hs_apt_updated:-0}

_hs_say() { printf 'services: %s\n' "$*"; }
_hs_err() { printf 'services: error: %s\n' "$*" >&2; }
_hs_warn() { printf 'services: warning: %s\n' "$*" >&2; }
_hs_have() { command -v "$1" >/dev/null 2>&1; }

# Runs a command as root: directly when we are root, else through sudo.
_hs_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif _hs_have sudo; then
        sudo "$@"
    else
        _hs_err "this needs root and sudo is not installed; run as root: $*"
        return 1
    fi
}

# Runs a command as the operating-system user `postgres` (for peer authentication
# over the local socket), from / so that psql does not complain about the cwd.
_hs_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        if _hs_have runuser; then
            (cd / && runuser -u postgres -- "$@")
        else
            (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
        fi
    elif _hs_have sudo; then
        (cd / && sudo -u postgres "$@")
    else
        _hs_err "need root or sudo to run as user postgres: $*"
        return 1
    fi
}

# apt-get install, non-interactive, with `apt-get update` once per run. The noise goes to
# a log file that is shown only when something fails.
_hs_apt_install() {
    if ! _hs_have apt-get; then
        _hs_err "apt-get not found: install $* with your system's package manager, then run this again"
        return 1
    fi
    local log="${TMPDIR:-/tmp}/herald-services-apt.log"
    if [ "$_hs_apt_updated" != 1 ]; then
        _hs_say "apt-get update"
        if ! _hs_as_root env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1; then
            _hs_err "apt-get update failed; its output:"
            tail -n 20 "$log" >&2
            return 1
        fi
        _hs_apt_updated=1
    fi
    _hs_say "installing Debian package(s): $* (apt-get, log: $log)"
    if ! _hs_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o Dpkg::Use-Pty=0 --no-install-recommends "$@" >>"$log" 2>&1; then
        _hs_err "apt-get install $* failed; its output:"
        tail -n 20 "$log" >&2
        return 1
    fi
    _hs_say "installed: $*"
}

# True when something accepts TCP connections on 127.0.0.1:<port> (bash's /dev/tcp).
_hs_tcp_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------- Rust

herald_services_cargo() {
    if cargo --version >/dev/null 2>&1; then
        return 0
    fi
    # rustup installs into ~/.cargo/bin; a fresh shell may not have it on PATH yet.
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    if [ -x "$cargo_bin/cargo" ]; then
        export PATH="$cargo_bin:$PATH"
        if cargo --version >/dev/null 2>&1; then
            return 0
        fi
    fi
    _hs_err "the Rust toolchain (cargo) is needed and was not found."
    _hs_err "install it with rustup, see https://rustup.rs :"
    _hs_err "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
    _hs_err "then open a new shell (or run: . \"\$HOME/.cargo/env\") and run this again."
    return 1
}

# ---------------------------------------------------------------------- PostgreSQL

_hs_pg_ready() {
    if _hs_have pg_isready; then
        pg_isready -q -h "$HERALD_SVC_PG_HOST" -p "$HERALD_SVC_PG_PORT" -t 3 >/dev/null 2>&1
    else
        _hs_tcp_open "$HERALD_SVC_PG_PORT"
    fi
}

# Newest installed server version (Debian layout: /usr/lib/postgresql/<v>/bin/postgres).
_hs_pg_server_version() {
    local d v best=""
    for d in "$HERALD_SVC_PG_LIB"/*/bin/postgres; do
        [ -x "$d" ] || continue
        v=${d#"$HERALD_SVC_PG_LIB"/}
        v=${v%%/*}
        best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n 1)
    done
    printf '%s' "$best"
}

# Newest version that has a cluster `main` (/etc/postgresql/<v>/main).
_hs_pg_cluster_version() {
    local d v best=""
    for d in "$HERALD_SVC_PG_ETC"/*/"$HERALD_SVC_PG_CLUSTER"; do
        [ -d "$d" ] || continue
        v=${d#"$HERALD_SVC_PG_ETC"/}
        v=${v%%/*}
        best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n 1)
    done
    printf '%s' "$best"
}

_hs_pg_login_ok() {
    PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -X -A -t -q -h "$HERALD_SVC_PG_HOST" \
        -p "$HERALD_SVC_PG_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1
}

herald_services_postgres() {
    local ver i
    if ! _hs_pg_ready; then
        if [ -z "$(_hs_pg_server_version)" ]; then
            _hs_say "PostgreSQL is not installed"
            _hs_apt_install postgresql || return 1
            # The package may have started its cluster itself.
            if _hs_pg_ready; then
                _hs_say "PostgreSQL is running on $HERALD_SVC_PG_HOST:$HERALD_SVC_PG_PORT"
            fi
        fi
    fi
    if ! _hs_pg_ready; then
        ver=$(_hs_pg_cluster_version)
        if [ -z "$ver" ]; then
            ver=$(_hs_pg_server_version)
            if [ -z "$ver" ]; then
                _hs_err "PostgreSQL server binaries not found under $HERALD_SVC_PG_LIB"
                return 1
            fi
            _hs_say "creating PostgreSQL $ver cluster $HERALD_SVC_PG_CLUSTER"
            _hs_as_root pg_createcluster -p "$HERALD_SVC_PG_PORT" "$ver" "$HERALD_SVC_PG_CLUSTER" >/dev/null || return 1
        fi
        _hs_say "starting PostgreSQL $ver cluster $HERALD_SVC_PG_CLUSTER"
        # Fails harmlessly when the cluster is already running; readiness is what counts.
        _hs_as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$HERALD_SVC_PG_CLUSTER" start || true
        for ((i = 0; i < HERALD_SVC_WAIT_SECONDS; i++)); do
            _hs_pg_ready && break
            sleep 1
        done
        if ! _hs_pg_ready; then
            _hs_err "PostgreSQL does not answer on $HERALD_SVC_PG_HOST:$HERALD_SVC_PG_PORT after ${HERALD_SVC_WAIT_SECONDS}s"
            _hs_have pg_lsclusters && pg_lsclusters >&2
            _hs_err "see /var/log/postgresql/postgresql-$ver-$HERALD_SVC_PG_CLUSTER.log"
            return 1
        fi
        _hs_say "PostgreSQL $ver is running on $HERALD_SVC_PG_HOST:$HERALD_SVC_PG_PORT"
    fi

    # The scripts and tests talk to it with psql and as postgres:postgres over TCP.
    if ! _hs_have psql; then
        _hs_apt_install postgresql-client || return 1
    fi
    if ! _hs_pg_login_ok; then
        if [ -z "$(_hs_pg_cluster_version)" ]; then
            _hs_err "cannot log in to PostgreSQL on $HERALD_SVC_PG_HOST:$HERALD_SVC_PG_PORT as postgres/postgres," \
                "and it is not a local Debian cluster this script can configure"
            return 1
        fi
        _hs_say "setting the password of PostgreSQL role postgres to 'postgres' (local development only)"
        _hs_as_postgres psql -X -q -p "$HERALD_SVC_PG_PORT" -d postgres \
            -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null || return 1
        if ! _hs_pg_login_ok; then
            _hs_err "still cannot log in as postgres/postgres over TCP; check pg_hba.conf" \
                "(a 'host all all 127.0.0.1/32 scram-sha-256' line is needed)"
            return 1
        fi
    fi
}

# ---------------------------------------------------------------------------- NATS

# Prints the server's INFO line (NATS sends it as soon as a client connects).
_hs_nats_info() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$HERALD_SVC_NATS_PORT && IFS= read -r line <&3 && printf '%s\n' \"\$line\"" 2>/dev/null
}

_hs_nats_ready() {
    case "$(_hs_nats_info)" in
        INFO*) return 0 ;;
        *) return 1 ;;
    esac
}

_hs_nats_bin() {
    local p
    p=$(command -v nats-server 2>/dev/null) || true
    if [ -n "$p" ] && [ -x "$p" ]; then
        printf '%s\n' "$p"
    elif [ -x /usr/sbin/nats-server ]; then # not on a normal user's PATH
        printf '%s\n' /usr/sbin/nats-server
    fi
}

herald_services_nats() {
    local info bin i
    info=$(_hs_nats_info) || true
    if [[ "$info" == INFO* ]]; then
        if [[ "$info" != *'"jetstream":true'* ]]; then
            _hs_warn "a NATS server answers on $HERALD_SVC_NATS_HOST:$HERALD_SVC_NATS_PORT but without JetStream;" \
                "tests that need JetStream will fail. Restart it with -js."
        fi
        return 0
    fi
    bin=$(_hs_nats_bin)
    if [ -z "$bin" ]; then
        _hs_say "NATS server is not installed"
        _hs_apt_install nats-server || return 1
        bin=$(_hs_nats_bin)
        if [ -z "$bin" ]; then
            _hs_err "nats-server still not found after installing the package"
            return 1
        fi
        _hs_nats_ready && return 0 # started by the package
    fi
    _hs_say "starting NATS with JetStream on $HERALD_SVC_NATS_HOST:$HERALD_SVC_NATS_PORT (log: $HERALD_SVC_NATS_LOG)"
    _hs_as_root mkdir -p "$HERALD_SVC_NATS_STORE" "$(dirname "$HERALD_SVC_NATS_LOG")" || return 1
    # The pid file keeps start-stop-daemon from mistaking another nats-server (say on
    # another port) for this one.
    _hs_as_root start-stop-daemon --start --oknodo --background \
        --make-pidfile --pidfile "$HERALD_SVC_NATS_PIDFILE" --exec "$bin" -- \
        -a "$HERALD_SVC_NATS_HOST" -p "$HERALD_SVC_NATS_PORT" -js \
        -sd "$HERALD_SVC_NATS_STORE" -l "$HERALD_SVC_NATS_LOG" || return 1
    for ((i = 0; i < HERALD_SVC_WAIT_SECONDS; i++)); do
        _hs_nats_ready && break
        sleep 1
    done
    if ! _hs_nats_ready; then
        _hs_err "NATS does not answer on $HERALD_SVC_NATS_HOST:$HERALD_SVC_NATS_PORT after ${HERALD_SVC_WAIT_SECONDS}s; end of $HERALD_SVC_NATS_LOG:"
        tail -n 20 "$HERALD_SVC_NATS_LOG" >&2 2>/dev/null || true
        return 1
    fi
    _hs_say "NATS is running on $HERALD_SVC_NATS_HOST:$HERALD_SVC_NATS_PORT"
}

# --------------------------------------------------------------------------- all

herald_services_ensure() {
    herald_services_cargo || return 1
    if [ "${HERALD_SKIP_SERVICES:-0}" = 1 ]; then
        return 0
    fi
    herald_services_postgres || return 1
    herald_services_nats || return 1
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced.
    if [ "${HERALD_SERVICES_DEFINE_ONLY:-0}" != 1 ]; then
        herald_services_ensure || return 1
    fi
else
    set -euo pipefail
    herald_services_ensure
fi

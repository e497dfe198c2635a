#!/usr/bin/env bash
# Local development dependencies for the Triggers API: Redis and PostgreSQL.
#
# Usage:
#   source scripts/dev-deps.sh          # start (or reuse) both, export DATABASE_URL / REDIS_URL
#   scripts/dev-deps.sh [start]         # start (or reuse) both, print `export ...` lines
#   eval "$(scripts/dev-deps.sh)"       # same, exporting into the current shell
#   scripts/dev-deps.sh stop            # stop both (only instances started from this repo)
#   scripts/dev-deps.sh restart         # stop, then start
#   scripts/dev-deps.sh status          # show whether each one answers
#
# Everything is idempotent: missing packages are installed with apt-get, data
# lives under <repo>/.data (git-ignored), and instances that already answer on
# the configured ports are reused rather than restarted.
#
# Environment:
#   TRIGGERS_DEV_REDIS_PORT   Redis port on 127.0.0.1       (default 56379)
#   TRIGGERS_DEV_PG_PORT      PostgreSQL port on 127.0.0.1  (default 55432)
#   TRIGGERS_DEV_REDIS_CLUSTER=1
#                             also run a 3-node Redis Cluster (for the tests
#                             that prove the service works on Cluster) and
#                             export REDIS_CLUSTER_URL
#   TRIGGERS_DEV_REDIS_CLUSTER_PORT
#                             its first node's port (default 47001; the next two
#                             follow; each node also uses its port + 10000)
#   DATABASE_URL, REDIS_URL   left untouched when the caller already set them
#
# Non-default ports are used on purpose so a system-wide Redis (6379) or
# PostgreSQL (5432) on the same machine never collides with the dev instances.

# --- Sourced mode ----------------------------------------------------------
# When sourced, the provisioning itself runs in a child bash process. That
# keeps `set -euo pipefail` and the helper functions out of the caller's shell
# (an interactive shell with `set -e` dies on the first failing command), and
# makes errexit reliable: errexit is ignored inside a `||` list, but only in
# the same process, not in a freshly started interpreter.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Arguments of the sourcing script are visible here as "$@"; ignore them,
    # sourcing always means "start".
    # Hand the caller's URLs (exported or not) to the child so that its
    # summary reflects what will actually be exported.
    DATABASE_URL="${DATABASE_URL:-}" REDIS_URL="${REDIS_URL:-}" \
        bash "${BASH_SOURCE[0]}" start >/dev/null || return $?
    export DATABASE_URL="${DATABASE_URL:-postgres://triggers:triggers@127.0.0.1:${TRIGGERS_DEV_PG_PORT:-55432}/triggers}"
    export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:${TRIGGERS_DEV_REDIS_PORT:-56379}}"
    if [[ "${TRIGGERS_DEV_REDIS_CLUSTER:-}" == 1 ]]; then
        export REDIS_CLUSTER_URL="${REDIS_CLUSTER_URL:-redis-cluster://127.0.0.1:${TRIGGERS_DEV_REDIS_CLUSTER_PORT:-47001}}"
    fi
    return 0
fi

# --- Executed mode ---------------------------------------------------------
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_ROOT="$REPO_ROOT/.data"
REDIS_PORT="${TRIGGERS_DEV_REDIS_PORT:-56379}"
PG_PORT="${TRIGGERS_DEV_PG_PORT:-55432}"
REDIS_DIR="$DATA_ROOT/redis"
CLUSTER_BASE_PORT="${TRIGGERS_DEV_REDIS_CLUSTER_PORT:-47001}"
CLUSTER_PORTS=("$CLUSTER_BASE_PORT" "$((CLUSTER_BASE_PORT + 1))" "$((CLUSTER_BASE_PORT + 2))")
CLUSTER_DIR="$DATA_ROOT/redis-cluster"
# Used when the `postgres` system user cannot reach $DATA_ROOT (see below).
PG_FALLBACK_ROOT="/tmp/triggers-api-dev"
PG_MAX_CONNECTIONS=300
PG_START_TIMEOUT=30
REDIS_START_TIMEOUT=10

log() { printf 'dev-deps: %s\n' "$*" >&2; }
die() { printf 'dev-deps: error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command with root privileges: directly when root, via sudo otherwise.
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and sudo is not installed)"
    fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install these packages manually: $*"
    log "installing $* (apt-get)"
    # `env` so that the variable also survives sudo's environment reset.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# ---------------------------------------------------------------- Redis ----

redis_ping() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

ensure_redis_installed() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        # redis-server depends on redis-tools, which ships redis-cli.
        apt_install redis-server
    fi
}

start_redis() {
    ensure_redis_installed
    if redis_ping; then
        # Someone (most likely an earlier run) already serves this port.
        # The service relies on noeviction: evicting stream entries would
        # silently lose events, so make a mismatch loud.
        local policy
        policy="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get maxmemory-policy 2>/dev/null | sed -n 2p)"
        if [[ "$policy" != "noeviction" ]]; then
            log "warning: redis on port $REDIS_PORT has maxmemory-policy='$policy' (expected noeviction)"
        fi
        log "redis already running on 127.0.0.1:$REDIS_PORT, reusing it"
        return 0
    fi

    mkdir -p "$REDIS_DIR"
    # AOF with fsync every second gives durability across restarts of the dev
    # instance; RDB snapshots are disabled (--save '') to avoid fork pauses;
    # noeviction makes Redis reject writes when full instead of dropping data.
    redis-server \
        --bind 127.0.0.1 \
        --port "$REDIS_PORT" \
        --dir "$REDIS_DIR" \
        --daemonize yes \
        --pidfile "$REDIS_DIR/redis.pid" \
        --logfile "$REDIS_DIR/redis.log" \
        --appendonly yes \
        --appendfsync everysec \
        --maxmemory-policy noeviction \
        --save ''

    local waited=0
    until redis_ping; do
        if ((waited >= REDIS_START_TIMEOUT * 10)); then
            tail -n 20 "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
            die "redis did not answer on 127.0.0.1:$REDIS_PORT within ${REDIS_START_TIMEOUT}s (log: $REDIS_DIR/redis.log)"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    log "started redis on 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
    command -v redis-cli >/dev/null 2>&1 || return 0
    if ! redis_ping; then
        log "redis: nothing answers on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    # Only shut down the instance whose data dir is ours, never a foreign
    # Redis that happens to listen on the same port.
    local dir
    dir="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get dir 2>/dev/null | sed -n 2p)"
    if [[ "$dir" != "$REDIS_DIR" ]]; then
        log "redis on port $REDIS_PORT uses dir '$dir', not $REDIS_DIR; leaving it alone"
        return 0
    fi
    # SHUTDOWN flushes and fsyncs the AOF before exiting.
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    local waited=0
    while redis_ping && ((waited < 100)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    log "stopped redis on 127.0.0.1:$REDIS_PORT"
}

# -------------------------------------------------------- Redis Cluster ----

cluster_ok() {
    redis-cli -h 127.0.0.1 -p "$CLUSTER_BASE_PORT" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

# Three masters, no replicas: the smallest real cluster, for tests that
# prove the service's keys and commands respect hash slots.
start_redis_cluster() {
    ensure_redis_installed
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]; then
            continue
        fi
        mkdir -p "$CLUSTER_DIR/$port"
        redis-server \
            --bind 127.0.0.1 \
            --port "$port" \
            --dir "$CLUSTER_DIR/$port" \
            --cluster-enabled yes \
            --cluster-config-file nodes.conf \
            --daemonize yes \
            --pidfile "$CLUSTER_DIR/$port/redis.pid" \
            --logfile "$CLUSTER_DIR/$port/redis.log" \
            --appendonly yes \
            --maxmemory-policy noeviction \
            --save ''
    done
    local waited=0
    for port in "${CLUSTER_PORTS[@]}"; do
        until [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]; do
            ((waited < REDIS_START_TIMEOUT * 10)) || die "cluster node 127.0.0.1:$port did not start (log: $CLUSTER_DIR/$port/redis.log)"
            sleep 0.1
            waited=$((waited + 1))
        done
    done
    if ! cluster_ok; then
        # Nodes restarted from their nodes.conf rejoin by themselves; only a
        # cluster that never had slots assigned needs creating.
        if redis-cli -h 127.0.0.1 -p "$CLUSTER_BASE_PORT" cluster info 2>/dev/null | grep -q '^cluster_slots_assigned:0'; then
            redis-cli --cluster create "${CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
        fi
        waited=0
        until cluster_ok; do
            ((waited < 300)) || die "redis cluster on 127.0.0.1:${CLUSTER_PORTS[*]} did not reach state ok"
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    log "redis cluster runs on 127.0.0.1:${CLUSTER_PORTS[*]}; REDIS_CLUSTER_URL=$(cluster_url)"
}

stop_redis_cluster() {
    command -v redis-cli >/dev/null 2>&1 || return 0
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        local dir
        dir="$(redis-cli -h 127.0.0.1 -p "$port" config get dir 2>/dev/null | sed -n 2p)"
        if [[ "$dir" == "$CLUSTER_DIR/$port" ]]; then
            redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || true
            log "stopped redis cluster node on 127.0.0.1:$port"
        fi
    done
}

# ----------------------------------------------------------- PostgreSQL ----

# Sets PG_BIN to the newest installed server, e.g. /usr/lib/postgresql/15/bin.
# A data dir initialised by an older major version that is still installed
# keeps using that version, since a newer server cannot open it.
PG_BIN=""
find_pg_bin() {
    local pgdata="${1:-}" want="" dir candidate=""
    if [[ -n "$pgdata" && -r "$pgdata/PG_VERSION" ]]; then
        want="$(cat "$pgdata/PG_VERSION")"
        if [[ -x "/usr/lib/postgresql/$want/bin/pg_ctl" ]]; then
            PG_BIN="/usr/lib/postgresql/$want/bin"
            return 0
        fi
    fi
    # The glob expands in lexical order (10 < 9); pick the numerically newest.
    candidate="$(
        for dir in /usr/lib/postgresql/*/bin; do
            if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then printf '%s\n' "$dir"; fi
        done | sort -V | tail -n 1
    )"
    if [[ -z "$candidate" ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        # Distributions that put the server binaries on PATH.
        candidate="$(dirname "$(command -v pg_ctl)")"
    fi
    PG_BIN="$candidate"
    [[ -n "$PG_BIN" ]]
}

ensure_pg_installed() {
    if ! find_pg_bin "${1:-}"; then
        apt_install postgresql
        find_pg_bin "${1:-}" || die "PostgreSQL server binaries not found after installing 'postgresql'"
    fi
}

# PostgreSQL refuses to run as root, so when we are root every server-side
# command runs as the `postgres` system user. `cd /` avoids "could not change
# directory" warnings when the current directory is unreadable for that user.
pg_as_owner() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

ensure_postgres_user() {
    is_root || return 0
    if ! getent passwd postgres >/dev/null; then
        log "creating system user 'postgres'"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin postgres
    fi
}

# Decide where the cluster lives. Deterministic (no side effects besides
# creating .data) so that `stop` finds the same directory as `start`.
PG_ROOT=""
choose_pg_root() {
    PG_ROOT="$DATA_ROOT"
    is_root || return 0
    mkdir -p "$DATA_ROOT"
    # .data itself must be traversable by `postgres` even under umask 077.
    chmod o+x "$DATA_ROOT" 2>/dev/null || true
    # `test -x` through runuser fails when any ancestor directory (typically
    # a 0700 home directory) blocks the postgres user.
    if ! runuser -u postgres -- test -x "$DATA_ROOT" 2>/dev/null; then
        PG_ROOT="$PG_FALLBACK_ROOT"
        log "the 'postgres' user cannot traverse $DATA_ROOT; using $PG_ROOT/pg for the database instead"
    fi
}

pg_paths() {
    PGDATA_DIR="$PG_ROOT/pg"
    # Unix socket and server log, next to (not inside) the data dir.
    PG_RUN_DIR="$PG_ROOT/pg-run"
    PG_LOG="$PG_RUN_DIR/postgres.log"
    # Unix socket paths are limited to ~107 bytes; a deeply nested checkout
    # would make the server fail to start, so move only the socket to /tmp.
    local sock="$PG_RUN_DIR/.s.PGSQL.$PG_PORT"
    if ((${#sock} > 100)); then
        PG_SOCKET_DIR="$PG_FALLBACK_ROOT/pg-sock-$PG_PORT"
    else
        PG_SOCKET_DIR="$PG_RUN_DIR"
    fi
}

pg_ready() {
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1
}

# psql as the bootstrap superuser over TCP; `-A trust` makes this password-less.
pg_admin_psql() {
    pg_as_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

# make_owned_dir DIR MODE: create DIR owned by the user the server runs as.
make_owned_dir() {
    mkdir -p "$1"
    if is_root; then
        chown postgres:postgres "$1"
    fi
    chmod "$2" "$1"
}

init_pg_cluster() {
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] && return 0
    log "initialising PostgreSQL cluster in $PGDATA_DIR"
    if [[ "$PG_ROOT" == "$PG_FALLBACK_ROOT" ]]; then
        mkdir -p "$PG_ROOT"
        chmod 0755 "$PG_ROOT"
    fi
    # initdb insists on 0700 (or 0750) for the data directory.
    make_owned_dir "$PGDATA_DIR" 0700
    # -A trust: no passwords for the dev cluster (the `triggers` role still
    # gets one, so DATABASE_URL looks like a production URL). -U postgres:
    # the same superuser name whether or not we run as root. C locale so
    # initdb does not depend on which locales the machine has generated.
    pg_as_owner "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust \
        --encoding=UTF8 --locale=C >/dev/null
}

write_pg_conf() {
    # Rewritten on every start so a changed port takes effect; included from
    # postgresql.conf exactly once.
    local conf="$PGDATA_DIR/triggers-dev.conf"
    local sockdir="${PG_SOCKET_DIR//\'/\'\'}"
    pg_as_owner tee "$conf" >/dev/null <<EOF
# Managed by scripts/dev-deps.sh; edits are overwritten on the next start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sockdir'
# The service pool plus tests that create one database per test need headroom.
max_connections = $PG_MAX_CONNECTIONS
EOF
    if ! grep -q "^include_if_exists = 'triggers-dev.conf'" "$PGDATA_DIR/postgresql.conf"; then
        printf "\ninclude_if_exists = 'triggers-dev.conf'\n" |
            pg_as_owner tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
    fi
}

ensure_pg_role_and_db() {
    local has_role has_db
    has_role="$(pg_admin_psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'triggers'")"
    if [[ "$has_role" != "1" ]]; then
        log "creating role 'triggers'"
        pg_admin_psql -c "CREATE ROLE triggers LOGIN CREATEDB PASSWORD 'triggers'"
    else
        # Keep the attributes right even if the role was created differently.
        pg_admin_psql -c "ALTER ROLE triggers LOGIN CREATEDB PASSWORD 'triggers'"
    fi
    has_db="$(pg_admin_psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'triggers'")"
    if [[ "$has_db" != "1" ]]; then
        log "creating database 'triggers'"
        pg_admin_psql -c "CREATE DATABASE triggers OWNER triggers"
    fi
}

start_pg() {
    ensure_postgres_user
    choose_pg_root
    pg_paths
    ensure_pg_installed "$PGDATA_DIR"

    if pg_ready; then
        log "postgres already running on 127.0.0.1:$PG_PORT, reusing it"
    else
        init_pg_cluster
        # The data dir may predate a version install; re-pick matching binaries.
        find_pg_bin "$PGDATA_DIR"
        # 0755 so other local users can reach the socket (it is 0777 itself).
        make_owned_dir "$PG_RUN_DIR" 0755
        if [[ "$PG_SOCKET_DIR" != "$PG_RUN_DIR" ]]; then
            mkdir -p "$PG_FALLBACK_ROOT"
            chmod 0755 "$PG_FALLBACK_ROOT"
            make_owned_dir "$PG_SOCKET_DIR" 0755
        fi
        write_pg_conf
        # -W: don't let pg_ctl wait; we poll pg_isready ourselves below so the
        # timeout and the error message are under our control. pg_ctl handles
        # a stale postmaster.pid left by an unclean shutdown.
        pg_as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -W start >/dev/null

        local waited=0
        until pg_ready; do
            if ((waited >= PG_START_TIMEOUT)); then
                log "last lines of $PG_LOG:"
                tail -n 30 "$PG_LOG" >&2 2>/dev/null || true
                die "postgres did not become ready on 127.0.0.1:$PG_PORT within ${PG_START_TIMEOUT}s"
            fi
            sleep 1
            waited=$((waited + 1))
        done
        log "started postgres on 127.0.0.1:$PG_PORT"
    fi
    ensure_pg_role_and_db
}

stop_pg() {
    ensure_postgres_user
    choose_pg_root
    pg_paths
    find_pg_bin "$PGDATA_DIR" || return 0
    if [[ ! -f "$PGDATA_DIR/postmaster.pid" ]]; then
        log "postgres: no server running from $PGDATA_DIR"
        return 0
    fi
    # fast: roll back open transactions and disconnect clients right away.
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null
    log "stopped postgres ($PGDATA_DIR)"
}

# ----------------------------------------------------------------- main ----

database_url() { printf '%s' "${DATABASE_URL:-postgres://triggers:triggers@127.0.0.1:$PG_PORT/triggers}"; }
redis_url() { printf '%s' "${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}"; }
cluster_url() { printf '%s' "${REDIS_CLUSTER_URL:-redis-cluster://127.0.0.1:$CLUSTER_BASE_PORT}"; }

cmd_start() {
    start_redis
    start_pg
    log "redis    runs on 127.0.0.1:$REDIS_PORT (data $REDIS_DIR); REDIS_URL=$(redis_url)"
    log "postgres runs on 127.0.0.1:$PG_PORT (data $PGDATA_DIR); DATABASE_URL=$(database_url)"
    [[ -n "${DATABASE_URL:-}" ]] && log "note: DATABASE_URL was already set by the caller and is left as is"
    [[ -n "${REDIS_URL:-}" ]] && log "note: REDIS_URL was already set by the caller and is left as is"
    # stdout carries only shell code so `eval "$(scripts/dev-deps.sh)"` works.
    printf 'export DATABASE_URL=%q\n' "$(database_url)"
    printf 'export REDIS_URL=%q\n' "$(redis_url)"
    if [[ "${TRIGGERS_DEV_REDIS_CLUSTER:-}" == 1 ]]; then
        start_redis_cluster
        printf 'export REDIS_CLUSTER_URL=%q\n' "$(cluster_url)"
    fi
}

cmd_status() {
    local rc=0
    if command -v redis-cli >/dev/null 2>&1 && redis_ping; then
        log "redis: up on 127.0.0.1:$REDIS_PORT"
    else
        log "redis: down (127.0.0.1:$REDIS_PORT)"
        rc=1
    fi
    if find_pg_bin && pg_ready; then
        log "postgres: up on 127.0.0.1:$PG_PORT"
    else
        log "postgres: down (127.0.0.1:$PG_PORT)"
        rc=1
    fi
    return "$rc"
}

case "${1:-start}" in
    start) cmd_start ;;
    stop)
        stop_redis
        stop_redis_cluster
        stop_pg
        ;;
    restart)
        stop_redis
        stop_redis_cluster
        stop_pg
        cmd_start
        ;;
    status) cmd_status ;;
    -h | --help | help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (expected start, stop, restart or status)" ;;
esac

#!/usr/bin/env bash
# Throwaway test services for the (PostgreSQL registry, S3 datastore) stack.
#
#   bash .ci/services.sh start DIR [MOTO_SERVER]   # writes DIR/env.sh to source
#   bash .ci/services.sh stop DIR
#
# start: a fresh PostgreSQL cluster in DIR/pg on a free loopback port (trust auth,
# owned by the 'postgres' system user when run as root, since postgres refuses to
# run as root), a database 'skybutler_test', and moto's S3 server on another free
# loopback port with a bucket 'skybutler-test'.  Nothing is installed here except
# PostgreSQL itself, from Debian packages, when no server binaries are found.
# stop: stops both and deletes DIR.  Safe to call twice or after a failed start.  Since both
# are deleted, env.sh tells the tests so (SKYBUTLER_TEST_THROWAWAY_SERVERS=1): they skip
# dropping their PostgreSQL schemas and S3 prefixes at the end of the session.
set -euo pipefail

cmd=${1:?usage: services.sh start|stop DIR [MOTO_SERVER]}
dir=${2:?usage: services.sh start|stop DIR [MOTO_SERVER]}
moto=${3:-moto_server}
db=skybutler_test
bucket=skybutler-test

log() { echo "[services] $*" >&2; }

# Run a command as the cluster owner: 'postgres' when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$d" ] && [ -x "$d/postgres" ]; then echo "$d"; return; fi
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        dirname "$(command -v pg_ctl)"; return
    fi
    return 1
}

# A plain HTTP request (no curl on a minimal Debian): http METHOD URL; fails on an error status.
http() {
    python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[2], method=sys.argv[1]), timeout=5)' "$1" "$2"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
    if [ -f "$dir/pg/postmaster.pid" ]; then
        log "stopping PostgreSQL"
        as_owner "$(cat "$dir/pg_bindir")/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/moto.pid" ]; then
        log "stopping moto"
        kill "$(cat "$dir/moto.pid")" 2>/dev/null || true
    fi
    rm -rf "$dir"
}

start() {
    mkdir -p "$dir"
    if ! bindir=$(pg_bindir); then
        [ "$(id -u)" = 0 ] || { log "PostgreSQL is not installed and we are not root to install it"; exit 1; }
        log "installing PostgreSQL from Debian packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql </dev/null >/dev/null
        bindir=$(pg_bindir)
    fi
    echo "$bindir" >"$dir/pg_bindir"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$dir"
        chmod 755 "$dir"
    fi

    local pg_port s3_port
    pg_port=$(free_port)
    log "PostgreSQL ($bindir) on 127.0.0.1:$pg_port"
    as_owner "$bindir/initdb" -D "$dir/pg" -U skybutler --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # fsync off: a throwaway cluster need not survive a crash, and tests run faster.
    as_owner "$bindir/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null || { cat "$dir/pg.log" >&2; exit 1; }
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$pg_port" -U skybutler "$db"

    s3_port=$(free_port)
    log "moto S3 server on 127.0.0.1:$s3_port"
    "$moto" -H 127.0.0.1 -p "$s3_port" >"$dir/moto.log" 2>&1 &
    echo $! >"$dir/moto.pid"
    local i
    for i in $(seq 150); do
        http GET "http://127.0.0.1:$s3_port/moto-api/" 2>/dev/null && break
        kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null || { cat "$dir/moto.log" >&2; exit 1; }
        sleep 0.2
    done
    http GET "http://127.0.0.1:$s3_port/moto-api/" || { cat "$dir/moto.log" >&2; exit 1; }
    # moto accepts unsigned requests: create the bucket with a plain PUT.
    http PUT "http://127.0.0.1:$s3_port/$bucket"

    cat >"$dir/env.sh" <<EOF
export SKYBUTLER_TEST_POSTGRES_URL=postgresql://skybutler@127.0.0.1:$pg_port/$db
export SKYBUTLER_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export SKYBUTLER_TEST_S3_BUCKET=$bucket
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$s3_port
export SKYBUTLER_TEST_THROWAWAY_SERVERS=1
EOF
    log "ready: source $dir/env.sh"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: services.sh start|stop DIR [MOTO_SERVER]" >&2; exit 2 ;;
esac

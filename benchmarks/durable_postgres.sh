#!/bin/bash
# A throwaway PostgreSQL cluster with production's durability (fsync=on, synchronous_commit=on:
# PostgreSQL's defaults) and its data on a real disk, for bench_postgres.py's writers' figures.
#
#   benchmarks/durable_postgres.sh start [DIR]   # prints the export line for SKYBUTLER_TEST_POSTGRES_URL
#   benchmarks/durable_postgres.sh stop [DIR]    # stops the cluster and deletes DIR
#
# DIR (default /var/tmp/skybutler-pgdur) must be on a disk, not a tmpfs (see `df DIR`).  Run as
# root (the cluster runs as the postgres user) or as a user who may run initdb; PGPORT picks the
# port (default 55999), PGBIN the server's binaries (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail
action=${1:?start or stop}
dir=${2:-/var/tmp/skybutler-pgdur}
port=${PGPORT:-55999}
bin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case $action in
start)
    if [ "$(stat -f -c %T "$(dirname "$dir")")" = tmpfs ]; then
        echo "$(dirname "$dir") is a tmpfs: put the cluster on a disk" >&2; exit 1
    fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U skybutler >"$dir/initdb.log"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U skybutler skybutler_test
    echo "export SKYBUTLER_TEST_POSTGRES_URL=postgresql://skybutler@127.0.0.1:$port/skybutler_test"
    ;;
stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
    rm -rf "$dir"
    ;;
*)
    echo "start or stop" >&2; exit 2
    ;;
esac

#!/usr/bin/env bash
# A throwaway PostgreSQL server for the registry tests, from Debian's packages:
#
#     source .ci/postgres.sh      # installs (apt-get) if needed, starts, exports DOGE_TEST_POSTGRES
#     bash .ci/postgres.sh stop   # stops it and deletes its data
#
# The cluster lives under $DOGE_PG_DIR (default /tmp/doge-pg), listens on 127.0.0.1:$DOGE_PG_PORT
# (default 55432) with `trust` authentication, and belongs to the `postgres` system user: the
# server refuses to run as root, and CI runs as root. Tests create one database each and drop it.
__doge_pg_main() {
    local dir="${DOGE_PG_DIR:-/tmp/doge-pg}" port="${DOGE_PG_PORT:-55432}"
    if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
    fi
    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    local as=()
    if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
    if [ "${1:-}" = stop ]; then
        "${as[@]}" "$bin/pg_ctl" -D "$dir" -m fast stop >&2 || true
        rm -rf "$dir"
        return 0
    fi
    if ! "${as[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        rm -rf "$dir"
        mkdir -p "$dir"
        if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
        "${as[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
        # Many test databases and 8+ concurrent writers: more connections than the default 100.
        "${as[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >&2
    fi
    echo "postgres://postgres@127.0.0.1:$port/postgres"
}
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: start it in a strict child shell, then export the URL into the caller.
    DOGE_TEST_POSTGRES="$(bash "${BASH_SOURCE[0]}")" || return 1
    export DOGE_TEST_POSTGRES
else
    set -euo pipefail
    __doge_pg_main "$@"
fi

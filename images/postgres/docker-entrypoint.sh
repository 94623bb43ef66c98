#!/usr/bin/env bash
# Entrypoint of gemctl-test/postgres:15 and :17 (built by scripts/build-images).
#
# Behaves like the official `postgres` image's entrypoint, as far as gemctl's
# tests and demo need, so specs written against this image also work with the
# real one:
#   * `postgres [options]` (the default CMD; a first argument starting with `-`
#     means server options): prepare $PGDATA, initialise it on first start from
#     POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, then become the server,
#     as user postgres, in the foreground as PID 1.
#   * anything else (`psql ...`, `pg_dumpall -h db-1 ...`, `bash -c ...`) is
#     exec'd unchanged, so the image doubles as a one-shot client container.
set -Eeuo pipefail

if [[ ${1:-} == -* ]]; then
	set -- postgres "$@"
fi
if [[ ${1:-} != postgres ]]; then
	exec "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

log() { printf 'docker-entrypoint: %s\n' "$*"; }

if [[ $(id -u) == 0 ]]; then
	# The data dir is typically a host directory bind-mounted by root, and the
	# server refuses a data dir it does not own or that others can read.
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA"
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	# The server's socket directory; /run may be empty in a fresh container.
	mkdir -p /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 2775 /var/run/postgresql
	# setpriv execs (no fork, unlike su/runuser), so the server ends up as
	# PID 1 and receives `docker stop`'s signal itself.
	exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

# The temporary server used during initialisation, reachable on the socket
# only: anyone polling over TCP (gemctl does) sees the database only once it
# is complete and the real server is up.
init_server_start() {
	pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start
}

init_cluster() {
	local host_auth
	if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
		host_auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	else
		# The official image refuses to start here; a test image is more
		# useful if it starts, but says so loudly.
		host_auth="${POSTGRES_HOST_AUTH_METHOD:-trust}"
		log "WARNING: POSTGRES_PASSWORD is not set: host connections use '$host_auth'"
	fi
	log "initialising $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB, host auth $host_auth)"
	run_initdb() {
		initdb --username="$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8 \
			--auth-local=trust --auth-host="$host_auth" -D "$PGDATA" "$@" >/dev/null
	}
	if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
		# Through a pipe, so the password is never in a file or in ps output.
		run_initdb --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
	else
		run_initdb
	fi

	# initdb only allows loopback host connections; containers on the same
	# docker network (the app, the copy container) come from anywhere. The
	# official image's one line, and like it no `host replication` line: a
	# replication connection over the network is refused, as in production.
	printf '\n# added by docker-entrypoint.sh\nhost all all all %s\n' \
		"$host_auth" >>"$PGDATA/pg_hba.conf"
	printf "\n# added by docker-entrypoint.sh\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	local psql=(psql -X -q -v ON_ERROR_STOP=1 --host=/var/run/postgresql --username="$POSTGRES_USER")
	init_server_start
	if [[ $POSTGRES_DB != postgres ]]; then
		# On stdin, because psql interpolates :"db" (quoted identifier) there
		# but not in -c.
		"${psql[@]}" --dbname=postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	local f
	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			log "running $f"
			PGHOST=/var/run/postgresql PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB" bash "$f"
			;;
		*.sql)
			log "running $f"
			"${psql[@]}" --dbname="$POSTGRES_DB" -f "$f"
			;;
		*) log "ignoring $f (only *.sh and *.sql run)" ;;
		esac
	done
	shopt -u nullglob
	pg_ctl -D "$PGDATA" -m fast -w stop
	log "initialisation complete; starting the server"
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
	init_cluster
else
	log "$PGDATA holds a database already; not initialising"
fi

exec "$@"

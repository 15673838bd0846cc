#!/usr/bin/env bash
# Finds or brings up the PostgreSQL the tests need and prints its URL on stdout.
# Order: $TEST_DATABASE_URL; else 127.0.0.1:5432 if it answers; else start the
# local cluster; else install PostgreSQL with apt-get and start it. If none
# works it prints one line on stderr and exits 1: the tests never skip it.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
fail() { echo "make test: cannot bring up PostgreSQL: $*" >&2; exit 1; }

if [ -n "${TEST_DATABASE_URL:-}" ]; then
  echo "$TEST_DATABASE_URL"
  exit 0
fi

answers() { # host port
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" -t 2
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}

as_postgres() { # run a command as the postgres OS user
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sudo -n -u postgres sh -c "$*"; fi
}

start_cluster() {
  command -v pg_ctlcluster >/dev/null 2>&1 || return 1
  local v
  v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$v" ] || return 1
  log "starting the local PostgreSQL $v cluster"
  if [ "$(id -u)" = 0 ]; then
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  else
    sudo -n pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  fi
  for _ in $(seq 1 30); do answers 127.0.0.1 5432 && return 0; sleep 1; done
  return 1
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 || return 1
  log "installing PostgreSQL with apt-get"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get install -y -q postgresql >&2 || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q postgresql >&2; } || return 1
}

if ! answers 127.0.0.1 5432; then
  start_cluster || { install_postgres && start_cluster; } || fail "nothing answers on 127.0.0.1:5432, and neither starting the local cluster nor 'apt-get install postgresql' worked"
fi

url="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
if command -v psql >/dev/null 2>&1; then
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=5" -Atqc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian install asks for a password over TCP: give the postgres role one.
    as_postgres "psql -qc \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
    url="postgres://postgres:postgres@127.0.0.1:5432/test?sslmode=disable"
  fi
  admin="${url/\/test\?/\/postgres?}"
  if ! psql "$admin" -Atqc "select 1 from pg_database where datname = 'test'" 2>/dev/null | grep -q 1; then
    psql "$admin" -qc 'CREATE DATABASE test' >/dev/null || fail "cannot create the database 'test'"
  fi
  psql "$url" -Atqc 'select 1' >/dev/null 2>&1 || fail "PostgreSQL answers on 127.0.0.1:5432 but refuses $url"
fi
echo "$url"

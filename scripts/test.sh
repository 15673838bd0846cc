#!/usr/bin/env bash
# The README's test command (`make test`): brings up PostgreSQL, then runs
# every test, with the race detector, against it and against SQLite files.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_DATABASE_URL=$(scripts/postgres.sh)
export TEST_DATABASE_URL
# The PostgreSQL restart test runs a cluster of its own: it needs the server
# binaries (initdb, pg_ctl) even when the shared database is elsewhere.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "test.sh: installing the PostgreSQL server binaries with apt-get (the restart test needs initdb and pg_ctl)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get install -y -q postgresql >&2 || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q postgresql >&2; } ||
    { echo "make test: cannot install the PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
fi
echo "tests use PostgreSQL at ${TEST_DATABASE_URL%%\?*}" | sed -E 's#://([^:@/]+):[^@/]*@#://\1:***@#'
go test -race -count=1 -timeout 12m ./...
# The hard-cap property test runs 40 runs under the race detector above and all 1,000 here, without it;
# the quote-bracket tests likewise run 12 runs each above and 60 here; the agent-run property test 40 above
# and all 500 here.
go test -count=1 -timeout 10m -run '^(TestPropertyHoldIsAHardCap|TestQuotesBracketCharges.*|TestPropertyAgentRuns)$' ./research/

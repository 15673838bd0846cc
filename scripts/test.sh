#!/usr/bin/env bash
# The README's test command (`make test`): brings up PostgreSQL, then runs
# every test, with the race detector, against it and against SQLite files.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_DATABASE_URL=$(scripts/postgres.sh)
export TEST_DATABASE_URL
echo "tests use PostgreSQL at ${TEST_DATABASE_URL%%\?*}" | sed -E 's#://([^:@/]+):[^@/]*@#://\1:***@#'
go test -race -count=1 -timeout 12m ./...
# The hard-cap property test runs 40 runs under the race detector above and all 1,000 here, without it;
# the quote-bracket tests likewise run 24 runs each above and 60 here.
go test -count=1 -timeout 10m -run '^(TestPropertyHoldIsAHardCap|TestQuotesBracketCharges.*)$' ./research/

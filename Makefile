.PHONY: test bench lint fuzz

# Brings up PostgreSQL if needed, then runs every test (race detector on).
test:
	./scripts/test.sh

# The ledger benchmark on PostgreSQL and SQLite; figures go to docs/benchmarks.md.
bench:
	DATABASE_URL=$$(./scripts/postgres.sh) go run ./cmd/forgebench ledger

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...

fuzz:
	go test ./billing -run '^$$' -fuzz FuzzParseMoney -fuzztime 30s
	go test ./scheduler -run '^$$' -fuzz FuzzParseSpec -fuzztime 20s

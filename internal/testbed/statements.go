package testbed

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Statements is a pgx tracer that counts what a PostgreSQL bed sends: every
// statement, and every round trip (a statement, BEGIN, COMMIT or ROLLBACK, a
// batch). River's own statements (on its river_* tables) are counted apart,
// so a figure says what forgebot's code costs. Set it as Options.Tracer.
type Statements struct {
	mu     sync.Mutex
	on     bool
	counts StatementCounts
	byText map[string]int64
}

// StatementCounts is what Statements counted.
type StatementCounts struct {
	Statements int64 // forgebot's statements (not BEGIN, COMMIT, ROLLBACK)
	RoundTrips int64 // forgebot's statements plus its transactions' BEGIN and COMMIT or ROLLBACK
	River      int64 // River's statements and batches
}

// Start resets the counts and starts counting.
func (s *Statements) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on, s.counts, s.byText = true, StatementCounts{}, map[string]int64{}
}

// Stop stops counting and returns the counts.
func (s *Statements) Stop() StatementCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = false
	return s.counts
}

// Top lists the most frequent statements counted since Start, for reading
// where round trips go (the first 60 characters of each, with its count).
func (s *Statements) Top(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for q, c := range s.byText {
		out = append(out, fmt.Sprintf("%6d  %s", c, q))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out[:min(n, len(out))]
}

func (s *Statements) count(sql string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.on {
		return
	}
	q := strings.Join(strings.Fields(sql), " ")
	switch low := strings.ToLower(q); {
	case strings.Contains(low, "river_"), strings.HasPrefix(low, "-- name:"):
		s.counts.River += n
		return
	case low == "begin", strings.HasPrefix(low, "begin "), strings.HasPrefix(low, "begin isolation"), low == "commit", low == "rollback":
		s.counts.RoundTrips += n
	default:
		s.counts.Statements += n
		s.counts.RoundTrips += n
	}
	s.byText[q[:min(60, len(q))]] += n
}

// TraceQueryStart implements pgx.QueryTracer.
func (s *Statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	s.count(data.SQL, 1)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (s *Statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer.
func (s *Statements) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if data.Batch != nil && len(data.Batch.QueuedQueries) > 0 {
		s.count(data.Batch.QueuedQueries[0].SQL, 1)
	}
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (s *Statements) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd implements pgx.BatchTracer.
func (s *Statements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

var (
	_ pgx.QueryTracer = (*Statements)(nil)
	_ pgx.BatchTracer = (*Statements)(nil)
)

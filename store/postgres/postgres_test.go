package postgres_test

import (
	"context"
	"testing"

	"github.com/tokensforge/forgebot/store/postgres"
	"github.com/tokensforge/forgebot/store/postgres/pgtest"
	"github.com/tokensforge/forgebot/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, harness(false))
}

// TestConformanceGeneralPath runs the suite again with the single-statement
// hold and capture turned off, so the shared transaction is proven on
// PostgreSQL too.
func TestConformanceGeneralPath(t *testing.T) {
	t.Parallel()
	storetest.Run(t, harness(true))
}

func harness(generalOnly bool) storetest.Harness {
	return storetest.Harness{
		Open: func(t *testing.T, opts storetest.Options) storetest.Store {
			_, cfg := pgtest.Schema(t)
			cfg.MaxConns = 10 // parallel tests share PostgreSQL's 100 connections
			s, err := postgres.OpenConfig(t.Context(), cfg, postgres.Options{
				Now: opts.Now, AfterStatement: opts.AfterStatement, GeneralPathOnly: generalOnly || opts.GeneralPathOnly,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Exec: func(t *testing.T, s storetest.Store, sql string) {
			if _, err := s.(*postgres.Store).Pool.Exec(context.Background(), sql); err != nil {
				t.Fatalf("exec %q: %v", sql, err)
			}
		},
	}
}

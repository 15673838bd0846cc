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
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, opts storetest.Options) storetest.Store {
			_, cfg := pgtest.Schema(t)
			cfg.MaxConns = 20
			s, err := postgres.OpenConfig(t.Context(), cfg, postgres.Options{Now: opts.Now, AfterStatement: opts.AfterStatement})
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
	})
}

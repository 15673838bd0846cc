package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tokensforge/forgebot/store/sqlite"
	"github.com/tokensforge/forgebot/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, opts storetest.Options) storetest.Store {
			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "forgebot.db"), sqlite.Options{Now: opts.Now, AfterStatement: opts.AfterStatement})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Exec: func(t *testing.T, s storetest.Store, sql string) {
			if _, err := s.(*sqlite.Store).DB.ExecContext(context.Background(), sql); err != nil {
				t.Fatalf("exec %q: %v", sql, err)
			}
		},
	})
}

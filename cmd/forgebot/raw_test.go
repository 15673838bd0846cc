package main

import (
	"context"
	"testing"

	"github.com/tokensforge/forgebot/store/postgres"
	"github.com/tokensforge/forgebot/store/sqlite"
)

// execRaw runs SQL behind the ledger's back, to corrupt it on purpose.
func execRaw(t *testing.T, s appStore, sql string) {
	t.Helper()
	var err error
	switch st := s.(type) {
	case *postgres.Store:
		_, err = st.Pool.Exec(context.Background(), sql)
	case *sqlite.Store:
		_, err = st.DB.ExecContext(context.Background(), sql)
	default:
		t.Fatalf("unknown store %T", s)
	}
	if err != nil {
		t.Fatal(err)
	}
}

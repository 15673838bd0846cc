package testbed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tokensforge/forgebot/store/sqlite"
)

// template is a migrated SQLite database, made once per test binary. A bed starts from a copy of its file
// instead of running every migration (forgebot's and River's) again: under the race detector the SQL
// parser behind River's schema changes was a fifth of a short test's CPU.
var template struct {
	once sync.Once
	db   []byte
	err  error
}

func migratedTemplate() ([]byte, error) {
	template.once.Do(func() {
		template.db, template.err = makeTemplate()
	})
	return template.db, template.err
}

func makeTemplate() ([]byte, error) {
	dir, err := os.MkdirTemp("", "forgebot-template-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		return nil, err
	}
	_, err = s.Migrate(ctx)
	s.Close()
	if err != nil {
		return nil, fmt.Errorf("migrate the template: %w", err)
	}
	// Closing the only connection checkpoints the WAL into the file; a WAL left with frames in it would
	// hold part of the schema.
	if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > 0 {
		return nil, errors.New("the template's WAL was not checkpointed at close")
	}
	return os.ReadFile(path)
}

// seedSQLite puts a copy of the migrated template at path, where no database is yet. The bed's store
// still runs Migrate on it, which then finds every migration applied, so a template behind the
// migrations would be caught there.
func seedSQLite(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return err // there already (a second instance on the same file), or unreadable
	}
	db, err := migratedTemplate()
	if err != nil {
		return err
	}
	return os.WriteFile(path, db, 0o600)
}

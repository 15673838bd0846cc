package sqlcore

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/tokensforge/forgebot/billing"
)

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// LoadMigrations reads NNNN_name.sql files from dir in fsys, in version order.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	files, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, f := range files {
		name := f.Name()
		num, _, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			continue
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number", name)
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text    NOT NULL,
	applied_at text    NOT NULL
)`

// SchemaVersion returns the newest applied migration, 0 on an empty database.
func (c *Core) SchemaVersion(ctx context.Context) (int, error) {
	var n int
	if err := c.DB.QueryRow(ctx, c.Dialect.HasTable, "schema_migrations").Scan(&n); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var v int
	if err := c.DB.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// CheckSchema returns billing.ErrSchemaBehind when a migration is not applied.
func (c *Core) CheckSchema(ctx context.Context, ms []Migration) error {
	v, err := c.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if want := ms[len(ms)-1].Version; v < want {
		return fmt.Errorf("%w (database at version %d, this build needs %d)", billing.ErrSchemaBehind, v, want)
	}
	// Migrations are numbered by whoever wrote them, so one may land below
	// the newest already applied: every one must be there, not just the top.
	rows, err := c.DB.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("read schema versions: %w", err)
	}
	defer rows.Close()
	have := map[int]bool{}
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("read schema versions: %w", err)
		}
		have[n] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema versions: %w", err)
	}
	for _, m := range ms {
		if !have[m.Version] {
			return fmt.Errorf("%w (migration %04d %s is not applied)", billing.ErrSchemaBehind, m.Version, m.Name)
		}
	}
	return nil
}

// Migrate applies every migration not yet applied, each in its own
// transaction together with its row in schema_migrations, and returns the
// names it applied.
func (c *Core) Migrate(ctx context.Context, ms []Migration) ([]string, error) {
	var applied []string
	for _, m := range ms {
		done := false
		err := c.inTx(ctx, func(tx Querier) error {
			if c.Dialect.MigrationLock != "" {
				if _, err := tx.Exec(ctx, c.Dialect.MigrationLock); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, createMigrationsTable); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			done = true
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, c.now().Format("2006-01-02T15:04:05.000000Z"))
			return err
		})
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

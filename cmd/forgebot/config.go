package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/store/postgres"
	"github.com/tokensforge/forgebot/store/sqlite"
)

// DefaultDatabaseURL is the embedded store used when DATABASE_URL is unset.
const DefaultDatabaseURL = "sqlite:./forgebot-data/forgebot.db"

// Config is everything forgebot reads from its environment, parsed once here.
type Config struct {
	DatabaseURL string
}

func loadConfig(getenv func(string) string) (Config, error) {
	c := Config{DatabaseURL: strings.TrimSpace(getenv("DATABASE_URL"))}
	if c.DatabaseURL == "" {
		c.DatabaseURL = DefaultDatabaseURL
	}
	return c, c.Validate()
}

// Validate checks the configuration without touching the network or disk.
func (c Config) Validate() error {
	u := c.DatabaseURL
	switch {
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return nil
	case strings.HasPrefix(u, "sqlite:"):
		if sqlitePath(u) == "" {
			return badInput("DATABASE_URL: sqlite: needs a file path, like sqlite:./forgebot-data/forgebot.db")
		}
		return nil
	}
	scheme, _, _ := strings.Cut(u, ":")
	return badInput("DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got %q)", scheme+":...")
}

func sqlitePath(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "//")
}

// appStore is a billing store that manages its own schema.
type appStore interface {
	billing.Store
	Migrate(ctx context.Context) ([]string, error)
	CheckSchema(ctx context.Context) error
}

// openStore opens the configured store. Unless forMigrate, it refuses a
// database whose schema is behind this build (and does not create an SQLite
// file that is not there yet).
func openStore(ctx context.Context, c Config, forMigrate bool) (appStore, error) {
	var (
		s   appStore
		err error
	)
	if strings.HasPrefix(c.DatabaseURL, "sqlite:") {
		path := sqlitePath(c.DatabaseURL)
		if _, statErr := os.Stat(path); !forMigrate && errors.Is(statErr, fs.ErrNotExist) {
			return nil, badInput("no database at %s yet: run `forgebot migrate` first", path)
		}
		s, err = sqlite.Open(ctx, path, sqlite.Options{})
	} else {
		openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err = postgres.Open(openCtx, c.DatabaseURL, postgres.Options{})
	}
	if err != nil {
		return nil, badInput("%v", err)
	}
	if !forMigrate {
		if err := s.CheckSchema(ctx); err != nil {
			s.Close()
			if errors.Is(err, billing.ErrSchemaBehind) {
				return nil, badInput("%v", err)
			}
			return nil, fmt.Errorf("check schema: %w", err)
		}
	}
	return s, nil
}

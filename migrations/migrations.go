// Package migrations holds the SQL schema for each database dialect, numbered
// and embedded: NNNN_name.sql files applied in order, each in its own
// transaction, by `forgebot migrate`.
package migrations

import "embed"

// Postgres holds migrations for store/postgres, under postgres/.
//
//go:embed postgres/*.sql
var Postgres embed.FS

// SQLite holds migrations for store/sqlite, under sqlite/.
//
//go:embed sqlite/*.sql
var SQLite embed.FS

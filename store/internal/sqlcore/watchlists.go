package sqlcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Watchlists implements research.Store.
func (c *Core) Watchlists(ctx context.Context, acc billing.AccountID) (map[string][]string, error) {
	rows, err := c.DB.Query(ctx, `SELECT name, symbols FROM watchlists WHERE account_id = $1 ORDER BY name`, acc)
	if err != nil {
		return nil, fmt.Errorf("read watchlists: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var name string
		var body []byte
		if err := rows.Scan(&name, &body); err != nil {
			return nil, err
		}
		var syms []string
		if err := json.Unmarshal(body, &syms); err != nil {
			return nil, err
		}
		out[name] = syms
	}
	return out, rows.Err()
}

// UpdateWatchlist implements research.Store.
func (c *Core) UpdateWatchlist(ctx context.Context, acc billing.AccountID, name string, fn func(symbols []string, exists bool, count int) ([]string, error)) ([]string, error) {
	var out []string
	err := c.inTx(ctx, func(tx Querier) error {
		var body []byte
		exists := true
		err := tx.QueryRow(ctx, `SELECT symbols FROM watchlists WHERE account_id = $1 AND name = $2`+c.Dialect.ForUpdate, acc, name).Scan(&body)
		if errors.Is(err, ErrNoRows) {
			exists, err = false, nil
		}
		if err != nil {
			return err
		}
		var syms []string
		if exists {
			if err := json.Unmarshal(body, &syms); err != nil {
				return err
			}
		}
		var count int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM watchlists WHERE account_id = $1`, acc).Scan(&count); err != nil {
			return err
		}
		if out, err = fn(syms, exists, count); err != nil {
			return err
		}
		if len(out) == 0 {
			_, err = tx.Exec(ctx, `DELETE FROM watchlists WHERE account_id = $1 AND name = $2`, acc, name)
			return err
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO watchlists (account_id, name, symbols, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account_id, name) DO UPDATE SET symbols = excluded.symbols, updated_at = excluded.updated_at`,
			acc, name, string(b), c.t(c.now()))
		return err
	})
	return out, err
}

var _ research.Store = (*Core)(nil)

package sqlcore

import (
	"context"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/research"
)

var _ research.ObservationStore = (*Core)(nil)

// RecordObservation implements research.ObservationStore; a run is recorded once.
func (c *Core) RecordObservation(ctx context.Context, o research.Observation) error {
	_, err := c.DB.Exec(ctx, `INSERT INTO quote_observations (run_id, route, depth, symbols, est_in, est_out, used_in, used_out, runtime_ms, created_at, steps)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (run_id) DO NOTHING`,
		o.RunID, o.Route, string(o.Depth), o.Symbols, o.EstIn, o.EstOut, o.UsedIn, o.UsedOut, o.Runtime.Milliseconds(), c.t(c.now()), o.Steps)
	if err != nil {
		return fmt.Errorf("record observation: %w", err)
	}
	return nil
}

// Observations implements research.ObservationStore: the newest first.
func (c *Core) Observations(ctx context.Context, route string, depth research.Depth, symbols, limit int) ([]research.Observation, error) {
	rows, err := c.DB.Query(ctx, `SELECT run_id, est_in, est_out, used_in, used_out, runtime_ms, steps FROM quote_observations
		WHERE route = $1 AND depth = $2 AND symbols = $3 ORDER BY id DESC LIMIT $4`, route, string(depth), symbols, limit)
	if err != nil {
		return nil, fmt.Errorf("observations: %w", err)
	}
	defer rows.Close()
	var out []research.Observation
	for rows.Next() {
		o := research.Observation{Route: route, Depth: depth, Symbols: symbols}
		var ms int64
		if err := rows.Scan(&o.RunID, &o.EstIn, &o.EstOut, &o.UsedIn, &o.UsedOut, &ms, &o.Steps); err != nil {
			return nil, err
		}
		o.Runtime = time.Duration(ms) * time.Millisecond
		out = append(out, o)
	}
	return out, rows.Err()
}

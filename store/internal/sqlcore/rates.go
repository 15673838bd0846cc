package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/bots"
)

var _ bots.RateStore = (*Core)(nil)

// errRateWait rolls a TakeRate transaction back when a rule says wait.
var errRateWait = errors.New("rate: wait")

// TakeRate implements bots.RateStore. Each rule's row (rate_cells) is
// created if needed and locked, in key order so that two calls sharing
// rules cannot deadlock; a token bucket is its theoretical arrival time, a
// sliding window its calls in rate_calls.
func (c *Core) TakeRate(ctx context.Context, now time.Time, rules []bots.RateRule) (time.Duration, bool, error) {
	rules = slices.Clone(rules)
	slices.SortFunc(rules, func(a, b bots.RateRule) int { return strings.Compare(a.Key, b.Key) })
	var wait time.Duration
	err := c.inTx(ctx, func(tx Querier) error {
		tats := make([]time.Time, len(rules))
		for i, r := range rules {
			// The upsert creates and locks the row in one statement.
			if err := tx.QueryRow(ctx, `INSERT INTO rate_cells (key, tat) VALUES ($1, $2)
				ON CONFLICT (key) DO UPDATE SET key = excluded.key RETURNING tat`, r.Key, c.t(now)).Scan(tc(&tats[i])); err != nil {
				return fmt.Errorf("rate %s: %w", r.Key, err)
			}
			switch {
			case r.Every > 0:
				wait = max(wait, bots.BucketWait(tats[i], now, r.Every, r.Burst, r.Need))
			case r.Window > 0:
				at, err := c.rateCalls(ctx, tx, r.Key, now.Add(-r.Window-r.Margin))
				if err != nil {
					return err
				}
				wait = max(wait, bots.WindowWait(at, now, r.Window, r.Max, r.Margin))
			}
		}
		if wait > 0 {
			return errRateWait
		}
		for i, r := range rules {
			switch {
			case r.Every > 0:
				if _, err := tx.Exec(ctx, `UPDATE rate_cells SET tat = $2 WHERE key = $1`, r.Key, c.t(bots.BucketTake(tats[i], now, r.Every))); err != nil {
					return fmt.Errorf("rate %s: %w", r.Key, err)
				}
			case r.Window > 0:
				if _, err := tx.Exec(ctx, `DELETE FROM rate_calls WHERE key = $1 AND at < $2`, r.Key, c.t(now.Add(-r.Window-r.Margin))); err != nil {
					return fmt.Errorf("rate %s: %w", r.Key, err)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO rate_calls (key, at) VALUES ($1, $2)`, r.Key, c.t(now)); err != nil {
					return fmt.Errorf("rate %s: %w", r.Key, err)
				}
			}
		}
		return nil
	})
	if errors.Is(err, errRateWait) {
		return wait, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return 0, true, nil
}

// rateCalls lists a window's calls since since, oldest first.
func (c *Core) rateCalls(ctx context.Context, tx Querier, key string, since time.Time) ([]time.Time, error) {
	rows, err := tx.Query(ctx, `SELECT at FROM rate_calls WHERE key = $1 AND at >= $2 ORDER BY at`, key, c.t(since))
	if err != nil {
		return nil, fmt.Errorf("rate %s: %w", key, err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var t time.Time
		if err := rows.Scan(tc(&t)); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// PruneRates implements bots.RateStore. A bucket whose theoretical arrival
// time passed is full, as a missing row would be; a window's row is only the
// lock its calls take (its tat is when it was made), so it goes once none of
// its calls is left. tat is checked on the row deleted, not only in the
// batch's select: a bucket a call took meanwhile (PostgreSQL re-reads the
// locked row) is kept. The cells go in batches (pruneBatch), so SQLite's one
// writer is not held for long.
func (c *Core) PruneRates(ctx context.Context, before time.Time) (int64, error) {
	total, err := c.DB.Exec(ctx, `DELETE FROM rate_calls WHERE at < $1`, c.t(before))
	if err != nil {
		return 0, fmt.Errorf("prune rate calls: %w", err)
	}
	for {
		n, err := c.DB.Exec(ctx, `DELETE FROM rate_cells WHERE tat < $1 AND key IN (SELECT c.key FROM rate_cells c WHERE c.tat < $1
			AND NOT EXISTS (SELECT 1 FROM rate_calls r WHERE r.key = c.key) ORDER BY c.key LIMIT $2)`, c.t(before), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune rate cells: %w", err)
		}
		total += n
		if n < pruneBatch || ctx.Err() != nil {
			return total, nil
		}
	}
}

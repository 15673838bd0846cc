package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/bots"
)

var _ bots.MessageStore = (*Core)(nil)

// terminalStates are the run states no view but the final follows.
const terminalStates = `('succeeded', 'partial', 'failed', 'cancelled', 'expired')`

// SaveMessage implements bots.MessageStore.
func (c *Core) SaveMessage(ctx context.Context, m bots.StoredMessage, owner string, until time.Time) (int64, error) {
	var id int64
	err := c.inTx(ctx, func(tx Querier) error {
		// A run has one final: one published again after its process died
		// is not kept twice.
		if m.RunID != "" {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE run_id = $1`, m.RunID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return bots.ErrKept
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO outbox (platform, msg_key, run_id, version, body, created_at, claimed_by, claim_until)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			m.Platform, m.Key, m.RunID, m.Version, string(m.Body), c.t(m.Created), owner, c.t(until)).Scan(&id)
	})
	if errors.Is(err, bots.ErrKept) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("save message: %w", err)
	}
	return id, nil
}

// ClaimMessages implements bots.MessageStore.
func (c *Core) ClaimMessages(ctx context.Context, owner string, platforms []string, now, until time.Time, limit int) ([]bots.StoredMessage, error) {
	var out []bots.StoredMessage
	for _, p := range platforms {
		err := c.inTx(ctx, func(tx Querier) error {
			rows, err := tx.Query(ctx, `SELECT id, platform, msg_key, run_id, version, body, created_at FROM outbox
				WHERE done_at IS NULL AND platform = $1 AND claim_until < $2 ORDER BY id LIMIT $3`+c.Dialect.ForUpdate+c.Dialect.SkipLocked,
				p, c.t(now), limit)
			if err != nil {
				return err
			}
			var got []bots.StoredMessage
			for rows.Next() {
				var m bots.StoredMessage
				var body []byte
				if err := rows.Scan(&m.ID, &m.Platform, &m.Key, &m.RunID, &m.Version, &body, tc(&m.Created)); err != nil {
					rows.Close()
					return err
				}
				m.Body = body
				got = append(got, m)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, m := range got {
				n, err := tx.Exec(ctx, `UPDATE outbox SET claimed_by = $2, claim_until = $3 WHERE id = $1 AND done_at IS NULL`, m.ID, owner, c.t(until))
				if err != nil {
					return err
				}
				if n == 1 {
					out = append(out, m)
				}
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("claim messages: %w", err)
		}
	}
	return out, nil
}

// RenewMessages implements bots.MessageStore.
func (c *Core) RenewMessages(ctx context.Context, owner string, until time.Time) error {
	if _, err := c.DB.Exec(ctx, `UPDATE outbox SET claim_until = $2 WHERE claimed_by = $1 AND done_at IS NULL`, owner, c.t(until)); err != nil {
		return fmt.Errorf("renew messages: %w", err)
	}
	return nil
}

// FinishMessage implements bots.MessageStore.
func (c *Core) FinishMessage(ctx context.Context, id int64, delivered bool, at time.Time) error {
	if _, err := c.DB.Exec(ctx, `UPDATE outbox SET done_at = $2, delivered = $3 WHERE id = $1 AND done_at IS NULL`, id, c.t(at), delivered); err != nil {
		return fmt.Errorf("finish message: %w", err)
	}
	return nil
}

// pruneBatch bounds one prune statement, so no transaction holds the table
// (or SQLite's one writer) for long however much piled up.
const pruneBatch = 1000

// PruneMessages implements bots.MessageStore.
func (c *Core) PruneMessages(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE done_at IS NOT NULL AND done_at < $1 ORDER BY id LIMIT $2)`,
		// A run whose final went out that long ago takes no more views; its
		// ended state alone refuses them should one still come (BeginView).
		`DELETE FROM run_views WHERE run_id IN (SELECT run_id FROM run_views WHERE final_at IS NOT NULL AND final_at < $1 LIMIT $2)`,
	} {
		for {
			n, err := c.DB.Exec(ctx, q, c.t(before), pruneBatch)
			if err != nil {
				return total, fmt.Errorf("prune messages: %w", err)
			}
			total += n
			if n < pruneBatch || ctx.Err() != nil {
				break
			}
		}
	}
	return total, nil
}

// BeginView implements bots.MessageStore.
func (c *Core) BeginView(ctx context.Context, runID string, version int64, final bool, now, until time.Time) (bool, time.Duration, error) {
	ok, wait := false, time.Duration(0)
	err := c.inTx(ctx, func(tx Querier) error {
		if _, err := tx.Exec(ctx, `INSERT INTO run_views (run_id) VALUES ($1) ON CONFLICT (run_id) DO NOTHING`, runID); err != nil {
			return err
		}
		if !final {
			n, err := tx.Exec(ctx, `UPDATE run_views SET busy_until = CASE WHEN busy_until IS NULL OR busy_until < $3 THEN $3 ELSE busy_until END
				WHERE run_id = $1 AND final_at IS NULL AND version <= $2
				AND NOT EXISTS (SELECT 1 FROM runs WHERE id = $1 AND state IN `+terminalStates+`)`, runID, version, c.t(until))
			ok = n == 1
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE run_views SET final_at = COALESCE(final_at, $3),
			version = CASE WHEN version < $2 THEN $2 ELSE version END WHERE run_id = $1`, runID, version, c.t(now)); err != nil {
			return err
		}
		var busy time.Time
		if err := tx.QueryRow(ctx, `SELECT busy_until FROM run_views WHERE run_id = $1`, runID).Scan(tc(&busy)); err != nil {
			return err
		}
		ok = true
		if busy.After(now) {
			wait = busy.Sub(now)
		}
		return nil
	})
	if err != nil {
		return false, 0, fmt.Errorf("begin view: %w", err)
	}
	return ok, wait, nil
}

// EndView implements bots.MessageStore.
func (c *Core) EndView(ctx context.Context, runID string, sent int64, final bool, until time.Time) error {
	return c.inTx(ctx, func(tx Querier) error {
		if sent > 0 {
			if _, err := tx.Exec(ctx, `UPDATE run_views SET version = CASE WHEN version < $2 THEN $2 ELSE version END WHERE run_id = $1`, runID, sent); err != nil {
				return fmt.Errorf("end view: %w", err)
			}
		}
		if !final {
			if _, err := tx.Exec(ctx, `UPDATE run_views SET busy_until = NULL WHERE run_id = $1 AND busy_until = $2`, runID, c.t(until)); err != nil {
				return fmt.Errorf("end view: %w", err)
			}
		}
		return nil
	})
}

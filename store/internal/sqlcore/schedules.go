package sqlcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
)

var _ scheduler.Store = (*Core)(nil)

// SaveSchedule implements scheduler.Store.
func (c *Core) SaveSchedule(ctx context.Context, s scheduler.Schedule) error {
	return c.storeSchedule(ctx, c.DB, s)
}

func (c *Core) storeSchedule(ctx context.Context, q Querier, s scheduler.Schedule) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	next := s.NextRunAt
	if next.IsZero() {
		next = time.Unix(0, 0)
	}
	_, err = q.Exec(ctx, `INSERT INTO schedules (id, account_id, status, next_run_at, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, next_run_at = excluded.next_run_at,
			updated_at = excluded.updated_at, body = excluded.body`,
		s.ID, s.AccountID, string(s.Status), c.t(next), c.t(c.now()), string(body))
	if err != nil {
		return fmt.Errorf("save schedule: %w", err)
	}
	return nil
}

func scheduleIn(ctx context.Context, q Querier, id, lock string) (scheduler.Schedule, error) {
	return bodyByID[scheduler.Schedule](ctx, q, "schedules", "schedule", id, lock)
}

// Schedule implements scheduler.Store.
func (c *Core) Schedule(ctx context.Context, id string) (scheduler.Schedule, error) {
	return scheduleIn(ctx, c.DB, id, "")
}

// SchedulesOf implements scheduler.Store.
func (c *Core) SchedulesOf(ctx context.Context, acc billing.AccountID) ([]scheduler.Schedule, error) {
	rows, err := c.DB.Query(ctx, `SELECT body FROM schedules WHERE account_id = $1 ORDER BY id`, acc)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []scheduler.Schedule
	for rows.Next() {
		var body []byte
		var s scheduler.Schedule
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(body, &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// UpdateSchedule implements scheduler.Store.
func (c *Core) UpdateSchedule(ctx context.Context, id string, fn func(*scheduler.Schedule) error) (scheduler.Schedule, error) {
	var out scheduler.Schedule
	err := c.inTx(ctx, func(tx Querier) error {
		s, err := scheduleIn(ctx, tx, id, c.Dialect.ForUpdate)
		if err != nil {
			return err
		}
		if err := fn(&s); err != nil {
			return err
		}
		out = s
		return c.storeSchedule(ctx, tx, s)
	})
	return out, err
}

// ClaimDue implements scheduler.Store.
func (c *Core) ClaimDue(ctx context.Context, now time.Time, limit int, decide func(scheduler.Schedule) scheduler.Due) ([]scheduler.Fire, error) {
	if c.Queue == nil {
		return nil, errors.New("claim: no job queue configured")
	}
	var fired []scheduler.Fire
	err := c.inNativeTx(ctx, func(tx Tx) error {
		rows, err := tx.Query(ctx, `SELECT body FROM schedules WHERE status = 'active' AND next_run_at <= $1
			ORDER BY next_run_at LIMIT $2`+c.Dialect.ForUpdate+c.Dialect.SkipLocked, c.t(now), limit)
		if err != nil {
			return fmt.Errorf("find due schedules: %w", err)
		}
		var due []scheduler.Schedule
		for rows.Next() {
			var body []byte
			var s scheduler.Schedule
			if err := rows.Scan(&body); err != nil {
				rows.Close()
				return err
			}
			if err := json.Unmarshal(body, &s); err != nil {
				rows.Close()
				return err
			}
			due = append(due, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, s := range due {
			d := decide(s)
			if d.Skip {
				continue
			}
			for _, at := range d.Missed {
				if _, err := c.insertFire(ctx, tx, scheduler.Fire{ScheduleID: s.ID, At: at, Outcome: scheduler.Missed, Note: "due while forgebot was down, outside the catch-up window"}); err != nil {
					return err
				}
			}
			if d.Fire != nil {
				f := scheduler.Fire{ScheduleID: s.ID, At: d.Fire.UTC(), Outcome: scheduler.Pending}
				inserted, err := c.insertFire(ctx, tx, f)
				if err != nil {
					return err
				}
				if inserted {
					if _, err := c.Queue.EnqueueFireTx(ctx, tx.Native(), s.ID, f.At); err != nil {
						return fmt.Errorf("enqueue fire: %w", err)
					}
					fired = append(fired, f)
				}
			}
			s.NextRunAt = d.Next
			if err := c.storeSchedule(ctx, tx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return fired, nil
}

// insertFire records a fire time once; it reports whether this call did.
func (c *Core) insertFire(ctx context.Context, tx Querier, f scheduler.Fire) (bool, error) {
	n, err := tx.Exec(ctx, `INSERT INTO schedule_fires (schedule_id, fire_at, outcome, run_id, note, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (schedule_id, fire_at) DO NOTHING`,
		f.ScheduleID, c.t(f.At.UTC()), string(f.Outcome), f.RunID, f.Note, c.t(c.now()))
	if err != nil {
		return false, fmt.Errorf("record fire: %w", err)
	}
	return n == 1, nil
}

// Fire implements scheduler.Store.
func (c *Core) Fire(ctx context.Context, scheduleID string, at time.Time) (scheduler.Fire, error) {
	f := scheduler.Fire{ScheduleID: scheduleID}
	err := c.DB.QueryRow(ctx, `SELECT fire_at, outcome, run_id, note FROM schedule_fires WHERE schedule_id = $1 AND fire_at = $2`,
		scheduleID, c.t(at.UTC())).Scan(tc(&f.At), &f.Outcome, &f.RunID, &f.Note)
	if errors.Is(err, ErrNoRows) {
		return f, fmt.Errorf("%w: fire %s at %s", research.ErrNotFound, scheduleID, at)
	}
	return f, err
}

// SetFire implements scheduler.Store.
func (c *Core) SetFire(ctx context.Context, f scheduler.Fire) error {
	_, err := c.DB.Exec(ctx, `UPDATE schedule_fires SET outcome = $3, run_id = $4, note = $5 WHERE schedule_id = $1 AND fire_at = $2`,
		f.ScheduleID, c.t(f.At.UTC()), string(f.Outcome), f.RunID, f.Note)
	return err
}

// Fires implements scheduler.Store.
func (c *Core) Fires(ctx context.Context, scheduleID string, limit int) ([]scheduler.Fire, error) {
	rows, err := c.DB.Query(ctx, `SELECT fire_at, outcome, run_id, note FROM schedule_fires WHERE schedule_id = $1 ORDER BY fire_at DESC LIMIT $2`, scheduleID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []scheduler.Fire
	for rows.Next() {
		f := scheduler.Fire{ScheduleID: scheduleID}
		if err := rows.Scan(tc(&f.At), &f.Outcome, &f.RunID, &f.Note); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// ActivateSchedule implements scheduler.Store: in one transaction, with the
// account's row locked (so concurrent activations of one account take
// turns; SQLite's writer lock does the same), it counts the account's live
// schedules and applies fn only while they are fewer than max.
func (c *Core) ActivateSchedule(ctx context.Context, id string, max int, fn func(*scheduler.Schedule) error) (scheduler.Schedule, error) {
	var out scheduler.Schedule
	pre, err := scheduleIn(ctx, c.DB, id, "")
	if err != nil {
		return out, err
	}
	err = c.inTx(ctx, func(tx Querier) error {
		var acc int64
		if err := tx.QueryRow(ctx, `SELECT id FROM accounts WHERE id = $1`+c.Dialect.ForUpdate, pre.AccountID).Scan(&acc); err != nil {
			return fmt.Errorf("lock account: %w", err)
		}
		s, err := scheduleIn(ctx, tx, id, c.Dialect.ForUpdate)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM schedules WHERE account_id = $1 AND status IN ('active', 'paused') AND id <> $2`,
			s.AccountID, s.ID).Scan(&n); err != nil {
			return fmt.Errorf("count schedules: %w", err)
		}
		if n >= max {
			return fmt.Errorf("%w: you have %d schedules, the most an account may have", scheduler.ErrBadSpec, n)
		}
		if err := fn(&s); err != nil {
			return err
		}
		out = s
		return c.storeSchedule(ctx, tx, s)
	})
	return out, err
}

// ScheduleCounts implements scheduler.Store: one account's schedules by
// status, counted by the database.
func (c *Core) ScheduleCounts(ctx context.Context, acc billing.AccountID) (map[scheduler.Status]int, error) {
	rows, err := c.DB.Query(ctx, `SELECT status, count(*) FROM schedules WHERE account_id = $1 GROUP BY status`, acc)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[scheduler.Status]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[scheduler.Status(st)] = n
	}
	return out, rows.Err()
}

// PruneProposals implements scheduler.Store: deletes schedules proposed
// before the time and never confirmed (they have no fires).
func (c *Core) PruneProposals(ctx context.Context, before time.Time) (int64, error) {
	return c.DB.Exec(ctx, `DELETE FROM schedules WHERE status = 'proposed' AND updated_at < $1`, c.t(before))
}

// PruneQuotes implements research.Store: deletes quotes that expired before
// the time and never became a run (a run keeps its quote).
func (c *Core) PruneQuotes(ctx context.Context, before time.Time) (int64, error) {
	return c.DB.Exec(ctx, `DELETE FROM quotes WHERE expires_at < $1 AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.quote_id = quotes.id)`, c.t(before))
}

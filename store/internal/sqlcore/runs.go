package sqlcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// SaveQuote implements research.Store.
func (c *Core) SaveQuote(ctx context.Context, q research.Quote) error {
	body, err := json.Marshal(q)
	if err != nil {
		return err
	}
	_, err = c.DB.Exec(ctx, `INSERT INTO quotes (id, account_id, status, created_at, expires_at, body)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at, body = excluded.body`,
		q.ID, q.AccountID, string(q.Status), c.t(q.CreatedAt), c.t(q.ExpiresAt), string(body))
	if err != nil {
		return fmt.Errorf("save quote: %w", err)
	}
	return nil
}

// Quote implements research.Store.
func (c *Core) Quote(ctx context.Context, id string) (research.Quote, error) {
	return quoteIn(ctx, c.DB, id, "")
}

func quoteIn(ctx context.Context, q Querier, id, lock string) (research.Quote, error) {
	return bodyByID[research.Quote](ctx, q, "quotes", "quote", id, lock)
}

// bodyByID reads the JSON body of the row with id from table (one of ours,
// never user input), locking it when lock is the dialect's FOR UPDATE.
func bodyByID[T any](ctx context.Context, q Querier, table, kind, id, lock string) (T, error) {
	var body []byte
	var v T
	err := q.QueryRow(ctx, `SELECT body FROM `+table+` WHERE id = $1`+lock, id).Scan(&body)
	if errors.Is(err, ErrNoRows) {
		return v, fmt.Errorf("%w: %s %q", research.ErrNotFound, kind, id)
	}
	if err != nil {
		return v, fmt.Errorf("read %s: %w", kind, err)
	}
	return v, json.Unmarshal(body, &v)
}

// ConfirmQuote implements research.Store.
func (c *Core) ConfirmQuote(ctx context.Context, quoteID string, run research.Run, holds []billing.HoldRequest, timeout time.Duration) (research.Run, error) {
	if c.Queue == nil {
		return run, errors.New("confirm: no job queue configured")
	}
	err := c.inNativeTx(ctx, func(tx Tx) error {
		q, err := quoteIn(ctx, tx, quoteID, c.Dialect.ForUpdate)
		if err != nil {
			return err
		}
		if q.Status != research.QuoteOpen {
			return fmt.Errorf("%w: quote is %s", research.ErrQuoteUsed, q.Status)
		}
		if err := c.checkRunLimitTx(ctx, tx, run.AccountID); err != nil {
			return err
		}
		if len(holds) == 0 || len(holds) > 2 {
			return fmt.Errorf("confirm: %d holds, want 1 or 2", len(holds))
		}
		h, err := c.placeHoldTx(ctx, tx, holds[0])
		if err != nil {
			return err
		}
		if len(holds) == 2 {
			fh, err := c.placeHoldTx(ctx, tx, holds[1])
			if err != nil {
				return err
			}
			run.FallbackHoldID, run.FallbackHold, run.FallbackBucket = fh.ID, fh.Amount, fh.Bucket
		}
		now := c.now()
		run.HoldID, run.Hold, run.State = h.ID, h.Amount, research.Queued
		run.CreatedAt, run.UpdatedAt, run.Version = now, now, 1
		if run.JobID, err = c.Queue.EnqueueTx(ctx, tx.Native(), run.ID, timeout); err != nil {
			return fmt.Errorf("enqueue run: %w", err)
		}
		if err := c.insertRun(ctx, tx, run); err != nil {
			return err
		}
		if err := c.leaseQueued(ctx, tx, run.ID); err != nil {
			return err
		}
		if err := c.insertTransition(ctx, tx, run.ID, "", research.Queued, run.Owner.String(), "confirmed", now); err != nil {
			return err
		}
		q.Status, q.RunID = research.QuoteConfirmed, run.ID
		body, err := json.Marshal(q)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE quotes SET status = $2, body = $3 WHERE id = $1`, q.ID, string(q.Status), string(body))
		return err
	})
	return run, err
}

// checkRunLimitTx refuses a confirm whose account has the runs it may have
// live at once (research.WithRunLimit), counted under a per-account lock on
// PostgreSQL (SQLite's BEGIN IMMEDIATE serialises writers), so concurrent
// confirms cannot all see room.
func (c *Core) checkRunLimitTx(ctx context.Context, tx Querier, acc billing.AccountID) error {
	limit, ok := research.RunLimitOf(ctx)
	if !ok {
		return nil
	}
	if c.Dialect.KeyLock != "" {
		if _, err := tx.Exec(ctx, c.Dialect.KeyLock, fmt.Sprintf("runs:%d", acc)); err != nil {
			return fmt.Errorf("lock runs: %w", err)
		}
	}
	var live int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM runs WHERE account_id = $1 AND state NOT IN `+terminalStates, acc).Scan(&live); err != nil {
		return fmt.Errorf("count live runs: %w", err)
	}
	if live >= limit {
		return &research.RunLimitError{Live: live, Limit: limit}
	}
	return nil
}

func (c *Core) insertRun(ctx context.Context, tx Querier, r research.Run) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO runs (id, quote_id, account_id, state, hold_id, job_id, created_at, updated_at, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		r.ID, r.QuoteID, r.AccountID, string(r.State), r.HoldID, r.JobID, c.t(r.CreatedAt), c.t(r.UpdatedAt), string(body))
	if err != nil {
		return fmt.Errorf("insert run: %w", err)
	}
	return nil
}

func (c *Core) storeRun(ctx context.Context, tx Querier, r *research.Run) error {
	r.Version++ // every stored change is a new version of the run
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE runs SET state = $2, job_id = $3, updated_at = $4, body = $5 WHERE id = $1`,
		r.ID, string(r.State), r.JobID, c.t(r.UpdatedAt), string(body))
	if err != nil {
		return fmt.Errorf("update run: %w", err)
	}
	return nil
}

func (c *Core) insertTransition(ctx context.Context, tx Querier, runID string, from, to research.State, actor, reason string, at time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO run_transitions (run_id, from_state, to_state, actor, reason, at) VALUES ($1, $2, $3, $4, $5, $6)`,
		runID, string(from), string(to), actor, reason, c.t(at))
	if err != nil {
		return fmt.Errorf("record transition: %w", err)
	}
	return nil
}

// Run implements research.Store.
func (c *Core) Run(ctx context.Context, id string) (research.Run, error) {
	return runIn(ctx, c.DB, id, "")
}

func runIn(ctx context.Context, q Querier, id, lock string) (research.Run, error) {
	return bodyByID[research.Run](ctx, q, "runs", "run", id, lock)
}

// UpdateRun implements research.Store.
func (c *Core) UpdateRun(ctx context.Context, id, actor, reason string, fn func(*research.Run) error) (research.Run, error) {
	var out research.Run
	err := c.inTx(ctx, func(tx Querier) error {
		r, err := runIn(ctx, tx, id, c.Dialect.ForUpdate)
		if err != nil {
			return err
		}
		if err := c.checkLease(ctx, tx, id); err != nil {
			return err
		}
		from := r.State
		if from.Terminal() {
			// An ended run is settled: its usage, outputs and state are
			// what the receipt says, and nothing may change them.
			return fmt.Errorf("%w: run %s is already %s", research.ErrWrongState, r.ID, r.State)
		}
		if err := fn(&r); err != nil {
			return err
		}
		r.UpdatedAt = c.now()
		if err := c.storeRun(ctx, tx, &r); err != nil {
			return err
		}
		if r.State != from {
			if err := c.insertTransition(ctx, tx, r.ID, from, r.State, actor, reason, r.UpdatedAt); err != nil {
				return err
			}
		}
		out = r
		return nil
	})
	return out, err
}

// SettleRun implements research.Store.
func (c *Core) SettleRun(ctx context.Context, id, actor, reason string, capture, fallbackCapture billing.Money, fn func(*research.Run, *billing.Receipt) error) (research.Run, error) {
	var out research.Run
	err := c.inTx(ctx, func(tx Querier) error {
		r, err := runIn(ctx, tx, id, c.Dialect.ForUpdate)
		if err != nil {
			return err
		}
		if r.State.Terminal() {
			out = r
			return fmt.Errorf("%w: run %s is already %s", research.ErrWrongState, r.ID, r.State)
		}
		if err := c.checkLease(ctx, tx, id); err != nil {
			return err
		}
		from := r.State
		now := c.now()
		// The run's bucket pays from its hold first, then from the
		// extensions its owner added, in order; each settles once.
		rest := max(capture, 0)
		part := min(rest, r.Hold)
		h, lapsed, err := c.settleHold(ctx, tx, r.HoldID, part, "run:"+r.ID+":settle", actor, now)
		if err != nil {
			return err
		}
		rest -= part
		held, captured, released := h.Amount, h.Captured, h.Released()
		for i, x := range r.Extensions {
			part := min(rest, x.Amount)
			xh, xl, err := c.settleHold(ctx, tx, x.HoldID, part, fmt.Sprintf("run:%s:settle-extension:%d", r.ID, i+1), actor, now)
			if err != nil {
				return err
			}
			rest -= part
			held, captured, released = held+xh.Amount, captured+xh.Captured, released+xh.Released()
			lapsed = lapsed || xl
		}
		rc := billing.Receipt{
			PublicID: billing.NewPublicID(), RunID: r.ID, Purchase: r.Purchase(), AccountID: r.AccountID, HoldID: r.HoldID,
			Model: r.Model, Route: r.RouteID, RouteKind: r.RouteKind, Bucket: r.Bucket,
			Held: held, Captured: captured, Released: released, Attempts: r.Attempts,
			StartedAt: r.StartedAt, FinishedAt: now, CreatedAt: now,
		}
		r.Captured, r.FinishedAt, r.UpdatedAt = captured, now, now
		if err := fn(&r, &rc); err != nil {
			return err
		}
		if !r.State.Terminal() {
			return fmt.Errorf("settle: %s is not a terminal state", r.State)
		}
		if lapsed {
			rc.Notes = strings.TrimPrefix(rc.Notes+"; "+lapsedNote, "; ")
		}
		rc.Status = string(r.State)
		r.ReceiptID = rc.PublicID
		if err := c.insertReceipt(ctx, tx, rc); err != nil {
			return err
		}
		if r.FallbackHoldID != 0 {
			// The other bucket's hold settles with its own receipt: that
			// bucket paid the fallback routes' tokens, nothing else.
			fh, lapsed, err := c.settleHold(ctx, tx, r.FallbackHoldID, min(max(fallbackCapture, 0), r.FallbackHold), "run:"+r.ID+":settle-fallback", actor, now)
			if err != nil {
				return err
			}
			paid, route := r.TokensPaidBy(r.FallbackBucket), ""
			for id := range r.ByRoute {
				if r.Buckets[id] == r.FallbackBucket {
					route = id
				}
			}
			frc := billing.Receipt{
				PublicID: billing.NewPublicID(), RunID: r.ID, Purchase: r.Purchase(), AccountID: r.AccountID, HoldID: r.FallbackHoldID,
				Model: r.Model, Route: route, RouteKind: billing.RouteKindFor(r.FallbackBucket), Bucket: r.FallbackBucket,
				TokensIn: paid.In, TokensOut: paid.Out, TokensInSource: rc.TokensInSource, TokensOutSource: rc.TokensOutSource,
				Held: fh.Amount, Captured: fh.Captured, Released: fh.Released(), Status: string(r.State),
				Notes:     "the other-bucket fallback of this run, allowed in its quote; the run's main receipt is " + rc.PublicID,
				StartedAt: r.StartedAt, FinishedAt: now, CreatedAt: now,
			}
			if lapsed {
				frc.Notes += "; " + lapsedNote
			}
			if err := c.insertReceipt(ctx, tx, frc); err != nil {
				return err
			}
			r.FallbackCaptured, r.FallbackReceiptID = fh.Captured, frc.PublicID
		}
		if err := c.storeRun(ctx, tx, &r); err != nil {
			return err
		}
		out = r
		return c.insertTransition(ctx, tx, r.ID, from, r.State, actor, reason, now)
	})
	return out, err
}

const lapsedNote = "the hold expired before the run settled, so nothing was charged"

// settleHold captures (or, for zero, releases) a run's hold under key. A
// hold past its expiry can no longer be captured: the run still ends, the
// hold expires (if the sweeper has not yet done it), and lapsed says so.
func (c *Core) settleHold(ctx context.Context, tx Querier, holdID int64, capture billing.Money, key, actor string, now time.Time) (billing.Hold, bool, error) {
	h, err := scanHold(tx.QueryRow(ctx, `SELECT `+holdCols+` FROM holds WHERE id = $1`+c.Dialect.ForUpdate, holdID))
	if err != nil {
		return h, false, fmt.Errorf("settle hold: %w", err)
	}
	lapsed := h.Status == billing.HoldExpired || (h.Status == billing.HoldOpen && !now.Before(h.ExpiresAt))
	switch {
	case lapsed && h.Status == billing.HoldOpen:
		h, err = c.resolveHold(ctx, tx, h, billing.HoldExpired, 0, expireKey(h.ID), actor, now)
	case lapsed:
	case capture > 0:
		h, err = c.resolveTx(ctx, tx, holdID, key, fmt.Sprintf("capture|%d|%d", holdID, capture), actor, billing.HoldCaptured, capture)
	default:
		h, err = c.resolveTx(ctx, tx, holdID, key, fmt.Sprintf("release|%d", holdID), actor, billing.HoldReleased, 0)
	}
	if err != nil {
		return h, lapsed, fmt.Errorf("settle hold: %w", err)
	}
	return h, lapsed, nil
}

// RequeueRun implements research.Store.
func (c *Core) RequeueRun(ctx context.Context, id, actor, reason string, timeout, holdTTL time.Duration) (research.Run, error) {
	return c.ContinueRun(ctx, id, actor, reason, nil, timeout, holdTTL, nil)
}

// ContinueRun implements research.Store.
func (c *Core) ContinueRun(ctx context.Context, id, actor, reason string, extra *billing.HoldRequest, timeout, holdTTL time.Duration, fn func(*research.Run) error) (research.Run, error) {
	var out research.Run
	err := c.inNativeTx(ctx, func(tx Tx) error {
		r, err := runIn(ctx, tx, id, c.Dialect.ForUpdate)
		if err != nil {
			return err
		}
		if r.State != research.Paused {
			return fmt.Errorf("%w: run is %s", research.ErrWrongState, r.State)
		}
		if fn != nil {
			if err := fn(&r); err != nil {
				return err
			}
		}
		now := c.now()
		if extra != nil {
			// The additional hold, its ledger entry and the run that may
			// spend it commit together, under the hold's own key.
			h, err := c.placeHoldTx(ctx, tx, *extra)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(r.Extensions, func(x research.Extension) bool { return x.HoldID == h.ID }) {
				r.Extensions = append(r.Extensions, research.Extension{HoldID: h.ID, Amount: h.Amount, By: actor, At: now})
			}
		}
		// The resumed run gets a full hold lifetime again, so pausing and
		// resuming many times never lets its hold lapse under it. A hold
		// already past its expiry is not revived.
		ids := []int64{r.HoldID, r.FallbackHoldID}
		for _, x := range r.Extensions {
			ids = append(ids, x.HoldID)
		}
		for _, id := range ids {
			if id == 0 {
				continue
			}
			n, err := tx.Exec(ctx, `UPDATE holds SET expires_at = $2 WHERE id = $1 AND status = 'open' AND expires_at > $3 AND expires_at < $2`,
				id, c.t(now.Add(holdTTL)), c.t(now))
			if err != nil {
				return fmt.Errorf("extend hold: %w", err)
			}
			if n == 0 {
				h, err := scanHold(tx.QueryRow(ctx, `SELECT `+holdCols+` FROM holds WHERE id = $1`, id))
				if err != nil {
					return fmt.Errorf("extend hold: %w", err)
				}
				if h.Status != billing.HoldOpen || !now.Before(h.ExpiresAt) {
					return fmt.Errorf("%w: the run's hold has expired", research.ErrWrongState)
				}
			}
		}
		if r.JobID, err = c.Queue.EnqueueTx(ctx, tx.Native(), r.ID, timeout); err != nil {
			return fmt.Errorf("enqueue run: %w", err)
		}
		r.State, r.PauseRequested, r.UpdatedAt = research.Queued, false, c.now()
		if err := c.storeRun(ctx, tx, &r); err != nil {
			return err
		}
		if err := c.leaseQueued(ctx, tx, r.ID); err != nil {
			return err
		}
		out = r
		return c.insertTransition(ctx, tx, r.ID, research.Paused, research.Queued, actor, reason, r.UpdatedAt)
	})
	return out, err
}

// CancelJob implements research.Store.
func (c *Core) CancelJob(ctx context.Context, jobID int64) error {
	if c.Queue == nil || jobID == 0 {
		return nil
	}
	return c.Queue.Cancel(ctx, jobID)
}

// Transitions implements research.Store.
func (c *Core) Transitions(ctx context.Context, runID string) ([]research.Transition, error) {
	rows, err := c.DB.Query(ctx, `SELECT run_id, from_state, to_state, actor, reason, at FROM run_transitions WHERE run_id = $1 ORDER BY id`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []research.Transition
	for rows.Next() {
		var t research.Transition
		if err := rows.Scan(&t.RunID, &t.From, &t.To, &t.Actor, &t.Reason, tc(&t.At)); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// StaleRuns implements research.Store.
func (c *Core) StaleRuns(ctx context.Context, states []research.State, before time.Time, limit int) ([]research.Run, error) {
	var out []research.Run
	for _, st := range states {
		rs, err := c.runsWhere(ctx, `state = $1 AND updated_at < $2 ORDER BY updated_at LIMIT $3`, string(st), c.t(before), limit)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// RunsOf implements research.Store.
func (c *Core) RunsOf(ctx context.Context, account billing.AccountID, limit int) ([]research.Run, error) {
	return c.runsWhere(ctx, `account_id = $1 ORDER BY created_at DESC LIMIT $2`, account, limit)
}

func (c *Core) runsWhere(ctx context.Context, where string, args ...any) ([]research.Run, error) {
	rows, err := c.DB.Query(ctx, `SELECT body FROM runs WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []research.Run
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var r research.Run
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

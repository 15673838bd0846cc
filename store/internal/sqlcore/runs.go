package sqlcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
		h, err := c.confirmHoldTx(ctx, tx, holds[0])
		if err != nil {
			return err
		}
		if len(holds) == 2 {
			fh, err := c.confirmHoldTx(ctx, tx, holds[1])
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

// confirmHoldTx places a run's hold inside its confirm transaction: in one
// statement where the dialect has it (FastPlaceHold: it returns no row, and
// changes nothing, for short funds, spend limits or debt), else, and for
// those cases, by the general path. The key is the new run's own, never
// used before, so the fast statement cannot fail on it.
func (c *Core) confirmHoldTx(ctx context.Context, tx Querier, req billing.HoldRequest) (billing.Hold, error) {
	if c.Dialect.FastPlaceHold != "" && req.DefaultLimits.None() {
		if err := req.Validate(); err != nil {
			return billing.Hold{}, err
		}
		now := c.now()
		h, err := scanHold(tx.QueryRow(ctx, c.Dialect.FastPlaceHold, req.AccountID, string(req.Bucket), int64(req.Amount), c.t(now),
			req.Reference, req.Key, c.t(now.Add(req.TTL)), req.Fingerprint(), req.Actor, req.Key+"/hold"))
		if !errors.Is(err, billing.ErrUnknownHold) {
			return h, err
		}
	}
	return c.placeHoldTx(ctx, tx, req)
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
	body, prog, err := encodeRun(r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO runs (id, quote_id, account_id, state, hold_id, job_id, created_at, updated_at, body, progress, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		r.ID, r.QuoteID, r.AccountID, string(r.State), r.HoldID, r.JobID, c.t(r.CreatedAt), c.t(r.UpdatedAt), body, prog, r.Version)
	if err != nil {
		return fmt.Errorf("insert run: %w", err)
	}
	return c.putOutputs(ctx, tx, r.ID, r.Outputs, nil)
}

// encodeRun splits a run into what its row stores: the body without the
// stages' text (each stage's text is a run_stages row) and the progress.
func encodeRun(r research.Run) (body, progress string, err error) {
	b := r
	b.Outputs = nil
	bb, err := json.Marshal(b)
	if err != nil {
		return "", "", err
	}
	pb, err := json.Marshal(r.Progress())
	if err != nil {
		return "", "", err
	}
	return string(bb), string(pb), nil
}

// decodeRun builds a run from its row: the body, overlaid with the
// progress (newer than the body's copy of it when the run advanced since
// the body was written) and the version column.
func decodeRun(body []byte, progress *string, version int64) (research.Run, error) {
	var r research.Run
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("decode run: %w", err)
	}
	if progress != nil && *progress != "" {
		var p research.Progress
		if err := json.Unmarshal([]byte(*progress), &p); err != nil {
			return r, fmt.Errorf("decode run progress: %w", err)
		}
		r.SetProgress(p)
	}
	if version > 0 {
		r.Version = version
	}
	if r.Outputs == nil {
		r.Outputs = map[int]string{}
	}
	return r, nil
}

// putOutputs stores the stages' text that differs from before (what the
// run had when it was read).
func (c *Core) putOutputs(ctx context.Context, tx Querier, runID string, outputs, before map[int]string) error {
	for idx, out := range outputs {
		if old, ok := before[idx]; ok && old == out {
			continue
		}
		if err := putOutput(ctx, tx, runID, idx, out); err != nil {
			return err
		}
	}
	return nil
}

func putOutput(ctx context.Context, tx Querier, runID string, idx int, out string) error {
	_, err := tx.Exec(ctx, `INSERT INTO run_stages (run_id, idx, output) VALUES ($1, $2, $3)
		ON CONFLICT (run_id, idx) DO UPDATE SET output = excluded.output`, runID, idx, out)
	if err != nil {
		return fmt.Errorf("store stage %d: %w", idx, err)
	}
	return nil
}

// storeRun writes a run read (locked) in the caller's transaction; before
// is the stages' text it had when read.
func (c *Core) storeRun(ctx context.Context, tx Querier, r *research.Run, before map[int]string) error {
	r.Version++ // every stored change is a new version of the run
	body, prog, err := encodeRun(*r)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE runs SET state = $2, job_id = $3, updated_at = $4, body = $5, progress = $6, version = $7 WHERE id = $1`,
		r.ID, string(r.State), r.JobID, c.t(r.UpdatedAt), body, prog, r.Version)
	if err != nil {
		return fmt.Errorf("update run: %w", err)
	}
	return c.putOutputs(ctx, tx, r.ID, r.Outputs, before)
}

// AdvanceRun implements research.Store.
func (c *Core) AdvanceRun(ctx context.Context, id string, version int64, p research.Progress, stage int, output string) error {
	owner, ok := research.LeaseOf(ctx)
	if !ok {
		return research.ErrStale // only a lease holder advances a run; others go through UpdateRun
	}
	now := c.now()
	p.UpdatedAt = now
	prog, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if c.Dialect.FastAdvance != "" {
		var n int64
		if err := c.DB.QueryRow(ctx, c.Dialect.FastAdvance, id, version, string(prog), c.t(now), owner, stage, output).Scan(&n); err != nil {
			return fmt.Errorf("advance run: %w", err)
		}
		if n == 0 {
			return research.ErrStale
		}
		return nil
	}
	return c.inTx(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `UPDATE runs SET progress = $3, version = version + 1, updated_at = $4
			WHERE id = $1 AND version = $2 AND lease_owner = $5 AND state IN ('queued', 'running', 'pausing', 'cancelling')`, id, version, string(prog), c.t(now), owner)
		if err != nil {
			return fmt.Errorf("advance run: %w", err)
		}
		if n == 0 {
			return research.ErrStale
		}
		if stage < 0 {
			return nil
		}
		return putOutput(ctx, tx, id, stage, output)
	})
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
	return runIn(ctx, c.DB, id)
}

// runIn reads a run and its stages' text in one statement.
func runIn(ctx context.Context, q Querier, id string) (research.Run, error) {
	rows, err := q.Query(ctx, `SELECT -1, CAST(body AS TEXT), progress, version FROM runs WHERE id = $1
		UNION ALL SELECT idx, output, NULL, 0 FROM run_stages WHERE run_id = $1
		ORDER BY 1`, id)
	if err != nil {
		return research.Run{}, fmt.Errorf("read run: %w", err)
	}
	defer rows.Close()
	var r research.Run
	found := false
	for rows.Next() {
		var (
			idx      int
			text     []byte
			progress *string
			version  int64
		)
		if err := rows.Scan(&idx, &text, &progress, &version); err != nil {
			return r, fmt.Errorf("read run: %w", err)
		}
		if idx < 0 {
			if r, err = decodeRun(text, progress, version); err != nil {
				return r, err
			}
			found = true
			continue
		}
		if found {
			r.Outputs[idx] = string(text)
		}
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("read run: %w", err)
	}
	if !found {
		return r, fmt.Errorf("%w: run %q", research.ErrNotFound, id)
	}
	return r, nil
}

// lockRun reads a run for update in the caller's transaction, with its
// stages' text (before, a copy, is for storeRun) and its lease holder.
func (c *Core) lockRun(ctx context.Context, tx Querier, id string) (r research.Run, before map[int]string, holder *string, err error) {
	var (
		body     []byte
		progress *string
		version  int64
	)
	err = tx.QueryRow(ctx, `SELECT CAST(body AS TEXT), progress, version, lease_owner FROM runs WHERE id = $1`+c.Dialect.ForUpdate, id).
		Scan(&body, &progress, &version, &holder)
	if errors.Is(err, ErrNoRows) {
		return r, nil, nil, fmt.Errorf("%w: run %q", research.ErrNotFound, id)
	}
	if err != nil {
		return r, nil, nil, fmt.Errorf("read run: %w", err)
	}
	if r, err = decodeRun(body, progress, version); err != nil {
		return r, nil, nil, err
	}
	rows, err := tx.Query(ctx, `SELECT idx, output FROM run_stages WHERE run_id = $1`, id)
	if err != nil {
		return r, nil, nil, fmt.Errorf("read run stages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx int
		var out string
		if err := rows.Scan(&idx, &out); err != nil {
			return r, nil, nil, fmt.Errorf("read run stages: %w", err)
		}
		r.Outputs[idx] = out
	}
	if err := rows.Err(); err != nil {
		return r, nil, nil, fmt.Errorf("read run stages: %w", err)
	}
	return r, maps.Clone(r.Outputs), holder, nil
}

// leaseOK refuses a write made under a lease (research.WithLease) that is
// no longer held; holder is the run's lease owner as read under its lock.
func leaseOK(ctx context.Context, holder *string) error {
	owner, ok := research.LeaseOf(ctx)
	if !ok {
		return nil
	}
	if holder == nil || *holder != owner {
		return research.ErrLeaseLost
	}
	return nil
}

// UpdateRun implements research.Store.
func (c *Core) UpdateRun(ctx context.Context, id, actor, reason string, fn func(*research.Run) error) (research.Run, error) {
	var out research.Run
	err := c.inTx(ctx, func(tx Querier) error {
		r, before, holder, err := c.lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := leaseOK(ctx, holder); err != nil {
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
		if err := c.storeRun(ctx, tx, &r, before); err != nil {
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
func (c *Core) SettleRun(ctx context.Context, id, actor, reason string, charge func(*research.Run) (billing.Money, billing.Money), fn func(*research.Run, *billing.Receipt) error) (research.Run, error) {
	var out research.Run
	err := c.inTx(ctx, func(tx Querier) error {
		r, before, holder, err := c.lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.State.Terminal() {
			out = r
			return fmt.Errorf("%w: run %s is already %s", research.ErrWrongState, r.ID, r.State)
		}
		if err := leaseOK(ctx, holder); err != nil {
			return err
		}
		from := r.State
		now := c.now()
		capture, fallbackCapture := charge(&r)
		// The run's bucket pays from its hold first, then from the
		// extensions its owner added, in order; each settles once.
		rest := max(capture, 0)
		part := min(rest, r.Hold)
		st, err := c.settleHold(ctx, tx, r.HoldID, part, "run:"+r.ID+":settle", actor, now)
		if err != nil {
			return err
		}
		rest -= part
		h := st.hold
		held, captured, released := h.Amount, h.Captured, h.Released()
		for i, x := range r.Extensions {
			part := min(rest, x.Amount)
			xs, err := c.settleHold(ctx, tx, x.HoldID, part, fmt.Sprintf("run:%s:settle-extension:%d", r.ID, i+1), actor, now)
			if err != nil {
				return err
			}
			rest -= part
			held, captured, released = held+xs.hold.Amount, captured+xs.hold.Captured, released+xs.hold.Released()
			st.lapsed = st.lapsed || xs.lapsed
			if xs.entry != 0 {
				st.available = xs.available
			}
		}
		rc := billing.Receipt{
			PublicID: billing.NewPublicID(), RunID: r.ID, Purchase: r.Purchase(), AccountID: r.AccountID, HoldID: r.HoldID,
			Model: r.Model, Route: r.RouteID, RouteKind: r.RouteKind, Bucket: r.Bucket,
			Held: held, Captured: captured, Released: released, Attempts: r.Attempts,
			StartedAt: r.StartedAt, FinishedAt: now, CreatedAt: now,
		}
		r.Captured, r.FinishedAt, r.UpdatedAt = captured, now, now
		r.CaptureEntryID, r.AvailableAfter = st.entry, st.available
		if err := fn(&r, &rc); err != nil {
			return err
		}
		if !r.State.Terminal() {
			return fmt.Errorf("settle: %s is not a terminal state", r.State)
		}
		if st.lapsed {
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
			fst, err := c.settleHold(ctx, tx, r.FallbackHoldID, min(max(fallbackCapture, 0), r.FallbackHold), "run:"+r.ID+":settle-fallback", actor, now)
			if err != nil {
				return err
			}
			fh := fst.hold
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
			if fst.lapsed {
				frc.Notes += "; " + lapsedNote
			}
			if err := c.insertReceipt(ctx, tx, frc); err != nil {
				return err
			}
			r.FallbackCaptured, r.FallbackReceiptID = fh.Captured, frc.PublicID
		}
		if err := c.storeRun(ctx, tx, &r, before); err != nil {
			return err
		}
		out = r
		return c.insertTransition(ctx, tx, r.ID, from, r.State, actor, reason, now)
	})
	return out, err
}

const lapsedNote = "the hold expired before the run settled, so nothing was charged"

// settledHold is how a run's hold ended: the hold, whether it had lapsed,
// the capture entry (0 when nothing was captured) and the bucket's
// available balance after the settle.
type settledHold struct {
	hold      billing.Hold
	lapsed    bool
	entry     int64
	available billing.Money
}

// settleHold captures (or, for zero, releases) a run's hold under key. A
// hold past its expiry can no longer be captured: the run still ends, the
// hold expires (if the sweeper has not yet done it), and lapsed says so.
//
// The common case, a capture of an open hold, is one statement where the
// dialect has it (FastSettleCapture); it returns no row for anything else
// (a lapsed or resolved hold), and the general path below decides.
func (c *Core) settleHold(ctx context.Context, tx Querier, holdID int64, capture billing.Money, key, actor string, now time.Time) (settledHold, error) {
	fingerprint := fmt.Sprintf("capture|%d|%d", holdID, capture)
	if capture > 0 && c.Dialect.FastSettleCapture != "" {
		var st settledHold
		h, err := scanHold(tx.QueryRow(ctx, c.Dialect.FastSettleCapture, holdID, int64(capture), c.t(now), key, actor, fingerprint), &st.entry, &st.available)
		switch {
		case err == nil:
			st.hold = h
			return st, nil
		case !errors.Is(err, billing.ErrUnknownHold):
			return st, fmt.Errorf("settle hold: %w", err)
		}
	}
	h, err := scanHold(tx.QueryRow(ctx, `SELECT `+holdCols+` FROM holds WHERE id = $1`+c.Dialect.ForUpdate, holdID))
	if err != nil {
		return settledHold{hold: h}, fmt.Errorf("settle hold: %w", err)
	}
	lapsed := h.Status == billing.HoldExpired || (h.Status == billing.HoldOpen && !now.Before(h.ExpiresAt))
	var res resolved
	switch {
	case lapsed && h.Status == billing.HoldOpen:
		res, err = c.resolveHold(ctx, tx, h, billing.HoldExpired, 0, expireKey(h.ID), actor, now)
	case lapsed:
		res.hold = h
	case capture > 0:
		res, err = c.resolveTx(ctx, tx, holdID, key, fingerprint, actor, billing.HoldCaptured, capture)
	default:
		res, err = c.resolveTx(ctx, tx, holdID, key, fmt.Sprintf("release|%d", holdID), actor, billing.HoldReleased, 0)
	}
	if err != nil {
		return settledHold{hold: res.hold, lapsed: lapsed}, fmt.Errorf("settle hold: %w", err)
	}
	return settledHold{hold: res.hold, lapsed: lapsed, entry: res.entry, available: res.available}, nil
}

// RequeueRun implements research.Store.
func (c *Core) RequeueRun(ctx context.Context, id, actor, reason string, timeout, holdTTL time.Duration) (research.Run, error) {
	return c.ContinueRun(ctx, id, actor, reason, nil, timeout, holdTTL, nil)
}

// ContinueRun implements research.Store.
func (c *Core) ContinueRun(ctx context.Context, id, actor, reason string, extra *billing.HoldRequest, timeout, holdTTL time.Duration, fn func(*research.Run) error) (research.Run, error) {
	var out research.Run
	err := c.inNativeTx(ctx, func(tx Tx) error {
		r, before, _, err := c.lockRun(ctx, tx, id)
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
		if err := c.storeRun(ctx, tx, &r, before); err != nil {
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
	rows, err := c.DB.Query(ctx, `SELECT CAST(body AS TEXT), progress, version FROM runs WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []research.Run
	for rows.Next() {
		var (
			body     []byte
			progress *string
			version  int64
		)
		if err := rows.Scan(&body, &progress, &version); err != nil {
			rows.Close()
			return nil, err
		}
		r, err := decodeRun(body, progress, version)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	// The stages' text of every run listed, in one more statement.
	ids, at := make([]any, len(out)), map[string]int{}
	marks := make([]string, len(out))
	for i, r := range out {
		ids[i], at[r.ID], marks[i] = r.ID, i, fmt.Sprintf("$%d", i+1)
	}
	srows, err := c.DB.Query(ctx, `SELECT run_id, idx, output FROM run_stages WHERE run_id IN (`+strings.Join(marks, ", ")+`)`, ids...)
	if err != nil {
		return nil, fmt.Errorf("list runs' stages: %w", err)
	}
	defer srows.Close()
	for srows.Next() {
		var id, text string
		var idx int
		if err := srows.Scan(&id, &idx, &text); err != nil {
			return nil, err
		}
		out[at[id]].Outputs[idx] = text
	}
	return out, srows.Err()
}

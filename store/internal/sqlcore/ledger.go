package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// claimKey records key with its payload fingerprint, first in every money
// transaction. When the key exists it returns the stored result id and
// replayed=true if the fingerprint matches, else ErrIdempotencyConflict. On
// PostgreSQL a concurrent transaction using the same key makes this insert
// wait for it, so a key's first use always wins whole.
func (c *Core) claimKey(ctx context.Context, tx Querier, key, fingerprint string) (resultID int64, replayed bool, err error) {
	n, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (idem_key, fingerprint, result_id, created_at)
		VALUES ($1, $2, 0, $3) ON CONFLICT (idem_key) DO NOTHING`, key, fingerprint, c.t(c.now()))
	if err != nil {
		return 0, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	if n == 1 {
		return 0, false, nil
	}
	var stored string
	if err := tx.QueryRow(ctx, `SELECT fingerprint, result_id FROM idempotency_keys WHERE idem_key = $1`, key).Scan(&stored, &resultID); err != nil {
		return 0, false, fmt.Errorf("read idempotency key: %w", err)
	}
	if stored != fingerprint {
		return 0, false, fmt.Errorf("%w: key %q", billing.ErrIdempotencyConflict, key)
	}
	return resultID, true, nil
}

func (c *Core) setKeyResult(ctx context.Context, tx Querier, key string, id int64) error {
	_, err := tx.Exec(ctx, `UPDATE idempotency_keys SET result_id = $1 WHERE idem_key = $2`, id, key)
	return err
}

// insertEntry appends one ledger entry.
func (c *Core) insertEntry(ctx context.Context, tx Querier, e billing.Entry) (billing.Entry, error) {
	e.CreatedAt = c.now()
	var holdID any
	if e.HoldID != 0 {
		holdID = e.HoldID
	}
	err := tx.QueryRow(ctx, `INSERT INTO ledger_entries
		(account_id, bucket, kind, amount, posted_delta, held_delta, hold_id, reference, idem_key, actor, created_at, debt_delta)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
		e.AccountID, string(e.Bucket), string(e.Kind), int64(e.Amount), int64(e.PostedDelta), int64(e.HeldDelta),
		holdID, e.Reference, e.Key, e.Actor, c.t(e.CreatedAt), int64(e.DebtDelta)).Scan(&e.ID)
	if err != nil {
		return e, fmt.Errorf("append %s entry: %w", e.Kind, err)
	}
	return e, nil
}

const entryCols = `id, account_id, bucket, kind, amount, posted_delta, held_delta, COALESCE(hold_id, 0), reference, idem_key, actor, created_at, debt_delta`

func scanEntry(r Row) (billing.Entry, error) {
	var e billing.Entry
	err := r.Scan(&e.ID, &e.AccountID, &e.Bucket, &e.Kind, &e.Amount, &e.PostedDelta, &e.HeldDelta, &e.HoldID,
		&e.Reference, &e.Key, &e.Actor, tc(&e.CreatedAt), &e.DebtDelta)
	return e, err
}

// Post implements billing.Ledger.
func (c *Core) Post(ctx context.Context, req billing.PostRequest) (billing.Entry, error) {
	if err := req.Validate(); err != nil {
		return billing.Entry{}, err
	}
	var out billing.Entry
	err := c.inTxRetry(ctx, func(tx Querier) error {
		resultID, replayed, err := c.claimKey(ctx, tx, req.Key, req.Fingerprint())
		if err != nil {
			return err
		}
		if replayed {
			out, err = scanEntry(tx.QueryRow(ctx, `SELECT `+entryCols+` FROM ledger_entries WHERE id = $1`, resultID))
			out.Replayed = true
			return err
		}
		acc := req.AccountID
		if acc == 0 {
			if acc, err = c.ensureAccount(ctx, tx, req.Identity); err != nil {
				return err
			}
		}
		if req.Kind != billing.KindAdjustment {
			out, err = c.creditTx(ctx, tx, billing.Entry{AccountID: acc, Bucket: req.Bucket, Kind: req.Kind, Amount: req.Amount,
				Reference: req.Reference, Key: req.Key + "/post", Actor: req.Actor})
			if err != nil {
				return err
			}
			return c.setKeyResult(ctx, tx, req.Key, out.ID)
		}
		// A negative adjustment may not take the bucket below what is held.
		n, err := tx.Exec(ctx, `UPDATE balances SET posted = posted + $3, updated_at = $4
			WHERE account_id = $1 AND bucket = $2 AND posted + $3 - held >= 0`,
			acc, string(req.Bucket), int64(req.Amount), c.t(c.now()))
		if err != nil {
			return fmt.Errorf("update balance: %w", err)
		}
		if n == 0 {
			return c.whyNoBalance(ctx, tx, acc)
		}
		out, err = c.insertEntry(ctx, tx, billing.Entry{
			AccountID: acc, Bucket: req.Bucket, Kind: req.Kind, Amount: req.Amount, PostedDelta: req.Amount,
			Reference: req.Reference, Key: req.Key + "/post", Actor: req.Actor,
		})
		if err != nil {
			return err
		}
		return c.setKeyResult(ctx, tx, req.Key, out.ID)
	})
	return out, err
}

// creditTx adds e.Amount (> 0) to a bucket inside the caller's transaction,
// paying the bucket's debt first, and appends e with its deltas filled in.
func (c *Core) creditTx(ctx context.Context, tx Querier, e billing.Entry) (billing.Entry, error) {
	var debt billing.Money
	err := tx.QueryRow(ctx, `SELECT debt FROM balances WHERE account_id = $1 AND bucket = $2`+c.Dialect.ForUpdate,
		e.AccountID, string(e.Bucket)).Scan(&debt)
	if errors.Is(err, ErrNoRows) {
		return e, fmt.Errorf("%w: account %d", billing.ErrUnknownAccount, e.AccountID)
	}
	if err != nil {
		return e, fmt.Errorf("read balance: %w", err)
	}
	paid := min(debt, e.Amount)
	e.DebtDelta, e.PostedDelta = -paid, e.Amount-paid
	if _, err := tx.Exec(ctx, `UPDATE balances SET posted = posted + $3, debt = debt - $4, updated_at = $5
		WHERE account_id = $1 AND bucket = $2`,
		e.AccountID, string(e.Bucket), int64(e.PostedDelta), int64(paid), c.t(c.now())); err != nil {
		return e, fmt.Errorf("update balance: %w", err)
	}
	return c.insertEntry(ctx, tx, e)
}

// whyNoBalance explains an UPDATE of balances that matched no row.
func (c *Core) whyNoBalance(ctx context.Context, tx Querier, acc billing.AccountID) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM balances WHERE account_id = $1`, acc).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: account %d", billing.ErrUnknownAccount, acc)
	}
	return billing.ErrInsufficientFunds
}

const holdCols = `id, account_id, bucket, amount, captured, status, reference, idem_key, created_at, expires_at, resolved_at`

// scanHold scans a row of holdCols, then any extra columns into extra.
func scanHold(r Row, extra ...any) (billing.Hold, error) {
	var h billing.Hold
	err := r.Scan(append([]any{&h.ID, &h.AccountID, &h.Bucket, &h.Amount, &h.Captured, &h.Status, &h.Reference, &h.Key,
		tc(&h.CreatedAt), tc(&h.ExpiresAt), tc(&h.ResolvedAt)}, extra...)...)
	if errors.Is(err, ErrNoRows) {
		return h, billing.ErrUnknownHold
	}
	return h, err
}

// PlaceHold implements billing.Ledger. The funds check is the UPDATE's WHERE
// clause, evaluated on the locked row, so no interleaving can overdraw.
func (c *Core) PlaceHold(ctx context.Context, req billing.HoldRequest) (billing.Hold, error) {
	if err := req.Validate(); err != nil {
		return billing.Hold{}, err
	}
	// The fast path declines accounts with limits or debt itself; operator
	// defaults make every account limited, so it is not tried at all then.
	if c.Dialect.FastPlaceHold != "" && req.DefaultLimits.None() {
		now := c.now()
		h, ok, err := c.fast(ctx, c.Dialect.FastPlaceHold, req.AccountID, string(req.Bucket), int64(req.Amount), c.t(now),
			req.Reference, req.Key, c.t(now.Add(req.TTL)), req.Fingerprint(), req.Actor, req.Key+"/hold")
		if ok || err != nil {
			return h, err
		}
	}
	var out billing.Hold
	err := c.inTx(ctx, func(tx Querier) error {
		var err error
		out, err = c.placeHoldTx(ctx, tx, req)
		return err
	})
	return out, err
}

// placeHoldTx places a hold inside the caller's transaction.
func (c *Core) placeHoldTx(ctx context.Context, tx Querier, req billing.HoldRequest) (billing.Hold, error) {
	resultID, replayed, err := c.claimKey(ctx, tx, req.Key, req.Fingerprint())
	if err != nil {
		return billing.Hold{}, err
	}
	if replayed {
		out, err := scanHold(tx.QueryRow(ctx, `SELECT `+holdCols+` FROM holds WHERE id = $1`, resultID))
		out.Replayed = true
		return out, err
	}
	if err := c.checkSpendTx(ctx, tx, req); err != nil {
		return billing.Hold{}, err
	}
	now := c.now()
	n, err := tx.Exec(ctx, `UPDATE balances SET held = held + $3, updated_at = $4
		WHERE account_id = $1 AND bucket = $2 AND posted - held >= $3`,
		req.AccountID, string(req.Bucket), int64(req.Amount), c.t(now))
	if err != nil {
		return billing.Hold{}, fmt.Errorf("reserve funds: %w", err)
	}
	if n == 0 {
		return billing.Hold{}, c.whyNoBalance(ctx, tx, req.AccountID)
	}
	out, err := scanHold(tx.QueryRow(ctx, `INSERT INTO holds
		(account_id, bucket, amount, captured, status, reference, idem_key, created_at, expires_at)
		VALUES ($1, $2, $3, 0, 'open', $4, $5, $6, $7) RETURNING `+holdCols,
		req.AccountID, string(req.Bucket), int64(req.Amount), req.Reference, req.Key, c.t(now), c.t(now.Add(req.TTL))))
	if err != nil {
		return out, fmt.Errorf("insert hold: %w", err)
	}
	if _, err := c.insertEntry(ctx, tx, billing.Entry{
		AccountID: req.AccountID, Bucket: req.Bucket, Kind: billing.KindHold, Amount: -req.Amount,
		HeldDelta: req.Amount, HoldID: out.ID, Reference: req.Reference, Key: req.Key + "/hold", Actor: req.Actor,
	}); err != nil {
		return out, err
	}
	return out, c.setKeyResult(ctx, tx, req.Key, out.ID)
}

// CaptureHold implements billing.Ledger.
func (c *Core) CaptureHold(ctx context.Context, req billing.CaptureRequest) (billing.Hold, error) {
	if err := req.Validate(); err != nil {
		return billing.Hold{}, err
	}
	if c.Dialect.FastCapture != "" {
		h, ok, err := c.fast(ctx, c.Dialect.FastCapture, req.HoldID, int64(req.Amount), c.t(c.now()), req.Key, req.Actor, req.Fingerprint())
		if ok || err != nil {
			return h, err
		}
	}
	return c.resolve(ctx, req.HoldID, req.Key, req.Fingerprint(), req.Actor, billing.HoldCaptured, req.Amount)
}

// ReleaseHold implements billing.Ledger.
func (c *Core) ReleaseHold(ctx context.Context, req billing.ReleaseRequest) (billing.Hold, error) {
	if err := req.Validate(); err != nil {
		return billing.Hold{}, err
	}
	return c.resolve(ctx, req.HoldID, req.Key, req.Fingerprint(), req.Actor, billing.HoldReleased, 0)
}

// resolve captures or releases one hold in one keyed transaction.
func (c *Core) resolve(ctx context.Context, holdID int64, key, fingerprint, actor string, to billing.HoldStatus, capture billing.Money) (billing.Hold, error) {
	var out resolved
	err := c.inTx(ctx, func(tx Querier) error {
		var err error
		out, err = c.resolveTx(ctx, tx, holdID, key, fingerprint, actor, to, capture)
		return err
	})
	return out.hold, err
}

// resolved is a hold's end as the transaction that resolved it saw it: the
// hold, its capture entry (0 when nothing was captured, or on a replay)
// and its bucket's available balance after it (0 on a replay).
type resolved struct {
	hold      billing.Hold
	entry     int64
	available billing.Money
}

// resolveTx captures or releases one hold inside the caller's transaction.
func (c *Core) resolveTx(ctx context.Context, tx Querier, holdID int64, key, fingerprint, actor string, to billing.HoldStatus, capture billing.Money) (resolved, error) {
	_, replayed, err := c.claimKey(ctx, tx, key, fingerprint)
	if err != nil {
		return resolved{}, err
	}
	h, err := scanHold(tx.QueryRow(ctx, `SELECT `+holdCols+` FROM holds WHERE id = $1`+c.Dialect.ForUpdate, holdID))
	if err != nil {
		return resolved{hold: h}, err
	}
	if replayed {
		h.Replayed = true
		return resolved{hold: h}, nil
	}
	if h.Status != billing.HoldOpen {
		return resolved{hold: h}, fmt.Errorf("%w: hold %d is %s", billing.ErrHoldResolved, h.ID, h.Status)
	}
	now := c.now()
	if to == billing.HoldCaptured {
		if !now.Before(h.ExpiresAt) {
			return resolved{hold: h}, fmt.Errorf("%w: hold %d expired at %s", billing.ErrHoldExpired, h.ID, h.ExpiresAt.Format("2006-01-02 15:04:05Z07:00"))
		}
		if capture > h.Amount {
			return resolved{hold: h}, fmt.Errorf("%w: %s of %s", billing.ErrCaptureExceedsHold, capture, h.Amount)
		}
	}
	out, err := c.resolveHold(ctx, tx, h, to, capture, key, actor, now)
	if err != nil {
		return out, err
	}
	return out, c.setKeyResult(ctx, tx, key, h.ID)
}

// resolveHold moves an open hold, already locked, to its final status and
// writes its entries: a capture entry for what was charged, a release entry for
// the rest.
func (c *Core) resolveHold(ctx context.Context, tx Querier, h billing.Hold, to billing.HoldStatus, capture billing.Money, key, actor string, now time.Time) (resolved, error) {
	out := resolved{hold: h}
	n, err := tx.Exec(ctx, `UPDATE holds SET status = $2, captured = $3, resolved_at = $4 WHERE id = $1 AND status = 'open'`,
		h.ID, string(to), int64(capture), c.t(now))
	if err != nil {
		return out, fmt.Errorf("resolve hold: %w", err)
	}
	if n != 1 {
		return out, fmt.Errorf("%w: hold %d", billing.ErrHoldResolved, h.ID)
	}
	if err := tx.QueryRow(ctx, `UPDATE balances SET posted = posted - $3, held = held - $4, updated_at = $5
		WHERE account_id = $1 AND bucket = $2 RETURNING posted - held`,
		h.AccountID, string(h.Bucket), int64(capture), int64(h.Amount), c.t(now)).Scan(&out.available); err != nil {
		return out, fmt.Errorf("settle balance: %w", err)
	}
	base := billing.Entry{AccountID: h.AccountID, Bucket: h.Bucket, HoldID: h.ID, Reference: h.Reference, Actor: actor}
	if to == billing.HoldCaptured {
		e := base
		e.Kind, e.Amount, e.PostedDelta, e.HeldDelta, e.Key = billing.KindCapture, -capture, -capture, -capture, key+"/capture"
		ce, err := c.insertEntry(ctx, tx, e)
		if err != nil {
			return out, err
		}
		out.entry = ce.ID
	}
	if rest := h.Amount - capture; rest > 0 {
		e := base
		e.Kind, e.Amount, e.HeldDelta, e.Key = billing.KindRelease, rest, -rest, key+"/release"
		if _, err := c.insertEntry(ctx, tx, e); err != nil {
			return out, err
		}
	}
	h.Status, h.Captured, h.ResolvedAt = to, capture, now
	out.hold = h
	return out, nil
}

// expireKey keys the entries of a hold's expiry, in the prefix callers may
// not use.
func expireKey(holdID int64) string { return fmt.Sprintf("%s%d", billing.ReservedKeyPrefix, holdID) }

// ExpireHolds implements billing.Ledger.
func (c *Core) ExpireHolds(ctx context.Context, limit int) ([]billing.Hold, error) {
	var out []billing.Hold
	err := c.inTx(ctx, func(tx Querier) error {
		now := c.now()
		rows, err := tx.Query(ctx, `SELECT `+holdCols+` FROM holds WHERE status = 'open' AND expires_at <= $1
			ORDER BY expires_at LIMIT $2`+c.Dialect.ForUpdate+c.Dialect.SkipLocked, c.t(now), limit)
		if err != nil {
			return fmt.Errorf("find expired holds: %w", err)
		}
		var due []billing.Hold
		for rows.Next() {
			h, err := scanHold(rows)
			if err != nil {
				rows.Close()
				return err
			}
			due = append(due, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, h := range due {
			res, err := c.resolveHold(ctx, tx, h, billing.HoldExpired, 0, expireKey(h.ID), "sweeper", now)
			if err != nil {
				return err
			}
			out = append(out, res.hold)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Hold implements billing.Ledger.
func (c *Core) Hold(ctx context.Context, id int64) (billing.Hold, error) {
	return scanHold(c.DB.QueryRow(ctx, `SELECT `+holdCols+` FROM holds WHERE id = $1`, id))
}

// Balances implements billing.Ledger.
func (c *Core) Balances(ctx context.Context, acc billing.AccountID) (billing.Balances, error) {
	rows, err := c.DB.Query(ctx, `SELECT bucket, posted, held, debt FROM balances WHERE account_id = $1`, acc)
	if err != nil {
		return nil, fmt.Errorf("read balances: %w", err)
	}
	defer rows.Close()
	out := billing.Balances{}
	for rows.Next() {
		var b billing.Balance
		if err := rows.Scan(&b.Bucket, &b.Posted, &b.Held, &b.Debt); err != nil {
			return nil, err
		}
		b.Available = b.Posted - b.Held
		out[b.Bucket] = b
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: account %d", billing.ErrUnknownAccount, acc)
	}
	return out, nil
}

// Entries implements billing.Ledger.
func (c *Core) Entries(ctx context.Context, acc billing.AccountID, limit int) ([]billing.Entry, error) {
	rows, err := c.DB.Query(ctx, `SELECT `+entryCols+` FROM ledger_entries WHERE account_id = $1 ORDER BY id DESC LIMIT $2`, acc, limit)
	if err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	defer rows.Close()
	var out []billing.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

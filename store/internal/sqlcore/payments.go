package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// checkSpendTx refuses a hold while the account owes debt, or when it would
// pass the account's spend limits. On PostgreSQL a per-account lock makes
// concurrent holds of one limited account take turns, so each one sees what
// the others held; on SQLite writers are serialised anyway.
func (c *Core) checkSpendTx(ctx context.Context, tx Querier, req billing.HoldRequest) error {
	var debt billing.Money
	if err := tx.QueryRow(ctx, `SELECT COALESCE(sum(debt), 0) FROM balances WHERE account_id = $1`, req.AccountID).Scan(&debt); err != nil {
		return fmt.Errorf("read debt: %w", err)
	}
	if debt > 0 {
		return fmt.Errorf("%w: %s owed", billing.ErrInDebt, debt)
	}
	lim, own, err := c.limitsTx(ctx, tx, req.AccountID)
	if err != nil {
		return err
	}
	if !own {
		lim = req.DefaultLimits
	}
	if lim.None() {
		return nil
	}
	if c.Dialect.KeyLock != "" {
		if _, err := tx.Exec(ctx, c.Dialect.KeyLock, fmt.Sprintf("spend:%d", req.AccountID)); err != nil {
			return fmt.Errorf("lock spend: %w", err)
		}
	}
	now := c.now()
	today, month, err := c.spentTx(ctx, tx, req.AccountID, now)
	if err != nil {
		return err
	}
	if lim.Daily > 0 && today+req.Amount > lim.Daily {
		return &billing.LimitError{Period: "daily", Limit: lim.Daily, Spent: today, Amount: req.Amount}
	}
	if lim.Monthly > 0 && month+req.Amount > lim.Monthly {
		return &billing.LimitError{Period: "monthly", Limit: lim.Monthly, Spent: month, Amount: req.Amount}
	}
	return nil
}

func (c *Core) limitsTx(ctx context.Context, q Querier, acc billing.AccountID) (billing.Limits, bool, error) {
	var l billing.Limits
	err := q.QueryRow(ctx, `SELECT daily, monthly FROM spend_limits WHERE account_id = $1`, acc).Scan(&l.Daily, &l.Monthly)
	if errors.Is(err, ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fmt.Errorf("read spend limits: %w", err)
	}
	return l, true, nil
}

// spentTx sums the account's holds placed this UTC day and month: an open
// hold at its amount, a settled one at what it captured.
func (c *Core) spentTx(ctx context.Context, q Querier, acc billing.AccountID, now time.Time) (today, month billing.Money, err error) {
	day, mon := billing.DayStart(now), billing.MonthStart(now)
	err = q.QueryRow(ctx, `SELECT
		COALESCE(sum(CASE WHEN created_at >= $2 THEN (CASE WHEN status = 'open' THEN amount ELSE captured END) ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN status = 'open' THEN amount ELSE captured END), 0)
		FROM holds WHERE account_id = $1 AND created_at >= $3`, acc, c.t(day), c.t(mon)).Scan(&today, &month)
	if err != nil {
		return 0, 0, fmt.Errorf("read spend: %w", err)
	}
	return today, month, nil
}

// SetLimits implements billing.Payments.
func (c *Core) SetLimits(ctx context.Context, acc billing.AccountID, l billing.Limits, actor string) error {
	if l.Daily < 0 || l.Monthly < 0 {
		return fmt.Errorf("%w: a limit cannot be negative", billing.ErrInvalidAmount)
	}
	return c.inTx(ctx, func(tx Querier) error {
		_, err := tx.Exec(ctx, `INSERT INTO spend_limits (account_id, daily, monthly, actor, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (account_id) DO UPDATE SET daily = excluded.daily, monthly = excluded.monthly,
			actor = excluded.actor, updated_at = excluded.updated_at`,
			acc, int64(l.Daily), int64(l.Monthly), actor, c.t(c.now()))
		if err != nil {
			return fmt.Errorf("set spend limits: %w", err)
		}
		return nil
	})
}

// Spending implements billing.Payments.
func (c *Core) Spending(ctx context.Context, acc billing.AccountID, defaults billing.Limits) (billing.Spend, error) {
	var sp billing.Spend
	var err error
	if sp.Limits, sp.Own, err = c.limitsTx(ctx, c.DB, acc); err != nil {
		return sp, err
	}
	if !sp.Own {
		sp.Limits = defaults
	}
	sp.Today, sp.Month, err = c.spentTx(ctx, c.DB, acc, c.now())
	return sp, err
}

const offerCols = `nonce, provider, account_id, payer, bucket, amount, chat, created_at, expires_at, paid_by`

func scanOffer(r Row) (billing.Offer, error) {
	var o billing.Offer
	var payer string
	err := r.Scan(&o.Nonce, &o.Provider, &o.AccountID, &payer, &o.Bucket, &o.Amount, &o.Chat, tc(&o.CreatedAt), tc(&o.ExpiresAt), &o.PaidBy)
	if errors.Is(err, ErrNoRows) {
		return o, fmt.Errorf("%w: offer", billing.ErrNotFound)
	}
	if err != nil {
		return o, err
	}
	o.Payer, _ = billing.ParseIdentity(payer)
	return o, nil
}

// CreateOffer implements billing.Payments.
func (c *Core) CreateOffer(ctx context.Context, o billing.Offer) error {
	if len(o.Nonce) < 16 {
		return errors.New("offer: nonce too short")
	}
	if o.Amount <= 0 {
		return fmt.Errorf("%w: an offer must be positive", billing.ErrInvalidAmount)
	}
	_, err := c.DB.Exec(ctx, `INSERT INTO payment_offers (`+offerCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '')`,
		o.Nonce, o.Provider, o.AccountID, o.Payer.String(), string(o.Bucket), int64(o.Amount), o.Chat, c.t(o.CreatedAt), c.t(o.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	return nil
}

// Offer implements billing.Payments.
func (c *Core) Offer(ctx context.Context, nonce string) (billing.Offer, error) {
	return scanOffer(c.DB.QueryRow(ctx, `SELECT `+offerCols+` FROM payment_offers WHERE nonce = $1`, nonce))
}

const paymentCols = `id, provider, charge_id, external_ref, offer_nonce, account_id, bucket, amount, refunded, entry_id, actor, created_at, refunded_at`

func scanPayment(r Row) (billing.Payment, error) {
	var p billing.Payment
	err := r.Scan(&p.ID, &p.Provider, &p.ChargeID, &p.ExternalRef, &p.OfferNonce, &p.AccountID, &p.Bucket, &p.Amount,
		&p.Refunded, &p.EntryID, &p.Actor, tc(&p.CreatedAt), tc(&p.RefundedAt))
	if errors.Is(err, ErrNoRows) {
		return p, billing.ErrUnknownPayment
	}
	return p, err
}

func paymentKey(p billing.Payment) string { return "pay:" + p.Reference() }

// CreditPayment implements billing.Payments.
func (c *Core) CreditPayment(ctx context.Context, req billing.PaymentRequest) (billing.Payment, billing.Entry, error) {
	if err := req.Validate(); err != nil {
		return billing.Payment{}, billing.Entry{}, err
	}
	var (
		p billing.Payment
		e billing.Entry
	)
	err := c.inTx(ctx, func(tx Querier) error {
		// The charge id's first use wins whole: on PostgreSQL a concurrent
		// credit of the same charge waits here for it.
		if c.Dialect.KeyLock != "" {
			if _, err := tx.Exec(ctx, c.Dialect.KeyLock, "pay:"+req.Provider+":"+req.ChargeID); err != nil {
				return err
			}
		}
		var fp string
		err := tx.QueryRow(ctx, `SELECT fingerprint FROM payments WHERE provider = $1 AND charge_id = $2`, req.Provider, req.ChargeID).Scan(&fp)
		switch {
		case err == nil:
			if fp != req.Fingerprint() {
				return fmt.Errorf("%w: charge %s:%s was credited with another payload", billing.ErrIdempotencyConflict, req.Provider, req.ChargeID)
			}
			if p, err = scanPayment(tx.QueryRow(ctx, `SELECT `+paymentCols+` FROM payments WHERE provider = $1 AND charge_id = $2`, req.Provider, req.ChargeID)); err != nil {
				return err
			}
			p.Replayed = true
			e, err = scanEntry(tx.QueryRow(ctx, `SELECT `+entryCols+` FROM ledger_entries WHERE id = $1`, p.EntryID))
			e.Replayed = true
			return err
		case !errors.Is(err, ErrNoRows):
			return fmt.Errorf("read payment: %w", err)
		}
		if req.OfferNonce != "" {
			o, err := scanOffer(tx.QueryRow(ctx, `SELECT `+offerCols+` FROM payment_offers WHERE nonce = $1`+c.Dialect.ForUpdate, req.OfferNonce))
			if err != nil {
				return fmt.Errorf("%w: unknown offer", billing.ErrOfferMismatch)
			}
			if o.AccountID != req.AccountID || o.Bucket != req.Bucket || o.Amount != req.Amount || o.Provider != req.Provider {
				return fmt.Errorf("%w: offer is %s to %s of account %d", billing.ErrOfferMismatch, o.Amount, o.Bucket, o.AccountID)
			}
			if o.PaidBy != "" {
				return fmt.Errorf("%w: offer already paid by %s", billing.ErrOfferMismatch, o.PaidBy)
			}
			if _, err := tx.Exec(ctx, `UPDATE payment_offers SET paid_by = $2 WHERE nonce = $1`, o.Nonce, req.ChargeID); err != nil {
				return err
			}
		}
		p = billing.Payment{Provider: req.Provider, ChargeID: req.ChargeID, ExternalRef: req.ExternalRef, OfferNonce: req.OfferNonce,
			AccountID: req.AccountID, Bucket: req.Bucket, Amount: req.Amount, Actor: req.Actor, CreatedAt: c.now()}
		e, err = c.creditTx(ctx, tx, billing.Entry{AccountID: req.AccountID, Bucket: req.Bucket, Kind: billing.KindTopup,
			Amount: req.Amount, Reference: p.Reference(), Key: paymentKey(p), Actor: req.Actor})
		if err != nil {
			return err
		}
		p.EntryID = e.ID
		return tx.QueryRow(ctx, `INSERT INTO payments (provider, charge_id, external_ref, offer_nonce, account_id, bucket, amount,
			refunded, entry_id, fingerprint, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11) RETURNING id`,
			p.Provider, p.ChargeID, p.ExternalRef, p.OfferNonce, p.AccountID, string(p.Bucket), int64(p.Amount), p.EntryID,
			req.Fingerprint(), p.Actor, c.t(p.CreatedAt)).Scan(&p.ID)
	})
	return p, e, err
}

// Payment implements billing.Payments.
func (c *Core) Payment(ctx context.Context, provider, id string) (billing.Payment, error) {
	return scanPayment(c.DB.QueryRow(ctx, `SELECT `+paymentCols+` FROM payments
		WHERE provider = $1 AND (charge_id = $2 OR (external_ref = $2 AND external_ref <> '')) ORDER BY id LIMIT 1`, provider, id))
}

// RefundPayment implements billing.Payments. What the bucket has available is
// taken back; the rest of the refund, money already spent or held, becomes
// debt on the bucket, paid first by the next money in.
func (c *Core) RefundPayment(ctx context.Context, req billing.RefundRequest) (billing.Payment, billing.Entry, error) {
	if err := req.Validate(); err != nil {
		return billing.Payment{}, billing.Entry{}, err
	}
	var (
		p billing.Payment
		e billing.Entry
	)
	err := c.inTx(ctx, func(tx Querier) error {
		var err error
		p, err = scanPayment(tx.QueryRow(ctx, `SELECT `+paymentCols+` FROM payments
			WHERE provider = $1 AND (charge_id = $2 OR (external_ref = $2 AND external_ref <> '')) ORDER BY id LIMIT 1`+c.Dialect.ForUpdate,
			req.Provider, req.ChargeID))
		if err != nil {
			return fmt.Errorf("%w: %s:%s", err, req.Provider, req.ChargeID)
		}
		total := req.Total
		if total == 0 {
			if p.Refunded >= p.Amount {
				return fmt.Errorf("%w: %s was refunded on %s", billing.ErrAlreadyRefunded, p.Reference(), p.RefundedAt.Format("2006-01-02 15:04Z"))
			}
			total = p.Amount
		}
		total = min(total, p.Amount)
		if total <= p.Refunded {
			p.Replayed = true
			return nil
		}
		amount := total - p.Refunded
		var posted, held billing.Money
		if err := tx.QueryRow(ctx, `SELECT posted, held FROM balances WHERE account_id = $1 AND bucket = $2`+c.Dialect.ForUpdate,
			p.AccountID, string(p.Bucket)).Scan(&posted, &held); err != nil {
			return fmt.Errorf("read balance: %w", err)
		}
		take := min(amount, max(posted-held, 0))
		now := c.now()
		if _, err := tx.Exec(ctx, `UPDATE balances SET posted = posted - $3, debt = debt + $4, updated_at = $5
			WHERE account_id = $1 AND bucket = $2`, p.AccountID, string(p.Bucket), int64(take), int64(amount-take), c.t(now)); err != nil {
			return fmt.Errorf("reverse balance: %w", err)
		}
		ref := p.Reference()
		if req.Note != "" {
			ref += " " + req.Note
		}
		e, err = c.insertEntry(ctx, tx, billing.Entry{AccountID: p.AccountID, Bucket: p.Bucket, Kind: billing.KindRefund,
			Amount: -amount, PostedDelta: -take, DebtDelta: amount - take, Reference: ref,
			Key: fmt.Sprintf("refund:%s:%d", p.Reference(), int64(total)), Actor: req.Actor})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE payments SET refunded = $2, refunded_at = $3 WHERE id = $1`, p.ID, int64(total), c.t(now)); err != nil {
			return fmt.Errorf("mark refunded: %w", err)
		}
		p.Refunded, p.RefundedAt = total, now
		return nil
	})
	return p, e, err
}

// GrantWelcome implements billing.Payments.
func (c *Core) GrantWelcome(ctx context.Context, id billing.Identity, w billing.Welcome) (billing.Entry, bool, error) {
	if err := id.Validate(); err != nil {
		return billing.Entry{}, false, err
	}
	if w.Amount <= 0 {
		return billing.Entry{}, false, nil
	}
	var (
		e       billing.Entry
		granted bool
	)
	key := "welcome:" + id.String()
	// Nearly every call finds the grant given: answer from reads, without
	// taking a write transaction (SQLite's is the whole database).
	if done, err := c.welcomed(ctx, c.DB, id, key); err != nil || done {
		return billing.Entry{}, false, err
	}
	err := c.inTxRetry(ctx, func(tx Querier) error {
		granted = false
		acc, err := c.ensureAccount(ctx, tx, id)
		if err != nil {
			return err
		}
		// One grant per account: linked identities share the lock.
		if c.Dialect.KeyLock != "" {
			if _, err := tx.Exec(ctx, c.Dialect.KeyLock, fmt.Sprintf("welcome:%d", acc)); err != nil {
				return err
			}
		}
		if done, err := c.welcomed(ctx, tx, id, key); err != nil || done {
			return err
		}
		if _, _, err := c.claimKey(ctx, tx, key, "welcome|"+id.String()); err != nil {
			return err
		}
		e, err = c.creditTx(ctx, tx, billing.Entry{AccountID: acc, Bucket: w.Bucket, Kind: billing.KindGrant, Amount: w.Amount,
			Reference: billing.WelcomeReference, Key: key + "/grant", Actor: "welcome"})
		if err != nil {
			return err
		}
		granted = true
		return c.setKeyResult(ctx, tx, key, e.ID)
	})
	return e, granted, err
}

// welcomed reports whether id's welcome grant was given: to this identity,
// or to the account it belongs to.
func (c *Core) welcomed(ctx context.Context, q Querier, id billing.Identity, key string) (bool, error) {
	var n int
	if err := q.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE idem_key = $1`, key).Scan(&n); err != nil || n > 0 {
		return n > 0, err
	}
	acc, err := accountOf(ctx, q, id)
	if errors.Is(err, billing.ErrUnknownAccount) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = q.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE account_id = $1 AND kind = 'grant' AND reference = $2`,
		acc, billing.WelcomeReference).Scan(&n)
	return n > 0, err
}

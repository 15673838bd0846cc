package sqlcore

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokensforge/forgebot/billing"
)

// Audit implements billing.Ledger. It reads in one transaction so the
// balances, entries and holds it compares belong to one moment.
func (c *Core) Audit(ctx context.Context) (billing.Audit, error) {
	a := billing.Audit{At: c.now()}
	err := c.inTx(ctx, func(tx Querier) error {
		rows, err := tx.Query(ctx, `SELECT b.account_id, b.bucket, b.posted, b.held,
			COALESCE((SELECT sum(posted_delta) FROM ledger_entries e WHERE e.account_id = b.account_id AND e.bucket = b.bucket), 0),
			COALESCE((SELECT sum(held_delta) FROM ledger_entries e WHERE e.account_id = b.account_id AND e.bucket = b.bucket), 0),
			COALESCE((SELECT sum(amount) FROM holds h WHERE h.account_id = b.account_id AND h.bucket = b.bucket AND h.status = 'open'), 0),
			b.debt,
			COALESCE((SELECT sum(debt_delta) FROM ledger_entries e WHERE e.account_id = b.account_id AND e.bucket = b.bucket), 0)
			FROM balances b ORDER BY b.account_id, b.bucket`)
		if err != nil {
			return fmt.Errorf("audit balances: %w", err)
		}
		for rows.Next() {
			var b billing.BucketAudit
			if err := rows.Scan(&b.AccountID, &b.Bucket, &b.Posted, &b.Held, &b.EntryPosted, &b.EntryHeld, &b.OpenHolds, &b.Debt, &b.EntryDebt); err != nil {
				rows.Close()
				return err
			}
			a.Buckets = append(a.Buckets, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := c.auditPayments(ctx, tx, &a); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+prefixed("h.", holdCols)+`,
			COALESCE(sum(CASE WHEN e.kind = 'hold' THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN e.kind = 'capture' THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN e.kind = 'release' THEN 1 ELSE 0 END), 0),
			COALESCE(sum(e.held_delta), 0),
			COALESCE(-sum(CASE WHEN e.kind = 'capture' THEN e.posted_delta ELSE 0 END), 0)
			FROM holds h LEFT JOIN ledger_entries e ON e.hold_id = h.id
			GROUP BY h.id ORDER BY h.id`)
		if err != nil {
			return fmt.Errorf("audit holds: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var h billing.HoldAudit
			if err := rows.Scan(&h.ID, &h.AccountID, &h.Bucket, &h.Amount, &h.Captured, &h.Status, &h.Reference, &h.Key,
				tc(&h.CreatedAt), tc(&h.ExpiresAt), tc(&h.ResolvedAt),
				&h.HoldEntries, &h.CaptureEntries, &h.ReleaseEntries, &h.EntryHeld, &h.EntryCaptured); err != nil {
				return err
			}
			a.Holds = append(a.Holds, h)
		}
		return rows.Err()
	})
	return a, err
}

func prefixed(prefix, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// auditPayments reads each payment beside the entries keyed to it, and the
// payment top-ups that name no payment.
func (c *Core) auditPayments(ctx context.Context, tx Querier, a *billing.Audit) error {
	rows, err := tx.Query(ctx, `SELECT `+prefixed("p.", paymentCols)+`,
		(SELECT count(*) FROM ledger_entries e WHERE e.idem_key = 'pay:' || p.provider || ':' || p.charge_id),
		COALESCE((SELECT sum(amount) FROM ledger_entries e WHERE e.idem_key = 'pay:' || p.provider || ':' || p.charge_id), 0),
		COALESCE((SELECT min(account_id) FROM ledger_entries e WHERE e.idem_key = 'pay:' || p.provider || ':' || p.charge_id), 0),
		COALESCE((SELECT min(bucket) FROM ledger_entries e WHERE e.idem_key = 'pay:' || p.provider || ':' || p.charge_id), ''),
		COALESCE((SELECT -sum(amount) FROM ledger_entries e WHERE e.kind = 'refund'
			AND substr(e.idem_key, 1, length(p.provider) + length(p.charge_id) + 9) = 'refund:' || p.provider || ':' || p.charge_id || ':'), 0)
		FROM payments p ORDER BY p.id`)
	if err != nil {
		return fmt.Errorf("audit payments: %w", err)
	}
	for rows.Next() {
		var pa billing.PaymentAudit
		p := &pa.Payment
		if err := rows.Scan(&p.ID, &p.Provider, &p.ChargeID, &p.ExternalRef, &p.OfferNonce, &p.AccountID, &p.Bucket, &p.Amount,
			&p.Refunded, &p.EntryID, &p.Actor, tc(&p.CreatedAt), tc(&p.RefundedAt),
			&pa.CreditEntries, &pa.Credited, &pa.CreditAccount, &pa.CreditBucket, &pa.Reversed); err != nil {
			rows.Close()
			return err
		}
		a.Payments = append(a.Payments, pa)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = tx.Query(ctx, `SELECT `+entryCols+` FROM ledger_entries e
		WHERE (substr(e.idem_key, 1, 4) = 'pay:' AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.entry_id = e.id))
		OR (substr(e.idem_key, 1, 7) = 'refund:' AND NOT EXISTS (SELECT 1 FROM payments p
			WHERE substr(e.idem_key, 1, length(p.provider) + length(p.charge_id) + 9) = 'refund:' || p.provider || ':' || p.charge_id || ':'))
		ORDER BY e.id`)
	if err != nil {
		return fmt.Errorf("audit payment entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return err
		}
		a.OrphanPayments = append(a.OrphanPayments, e)
	}
	return rows.Err()
}

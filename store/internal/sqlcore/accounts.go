package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// EnsureAccount implements billing.Accounts.
func (c *Core) EnsureAccount(ctx context.Context, id billing.Identity) (billing.AccountID, error) {
	if err := id.Validate(); err != nil {
		return 0, err
	}
	var acc billing.AccountID
	err := c.inTxRetry(ctx, func(tx Querier) error {
		var err error
		acc, err = c.ensureAccount(ctx, tx, id)
		return err
	})
	return acc, err
}

// ensureAccount finds or creates the identity's account with both buckets.
func (c *Core) ensureAccount(ctx context.Context, tx Querier, id billing.Identity) (billing.AccountID, error) {
	acc, err := accountOf(ctx, tx, id)
	if !errors.Is(err, billing.ErrUnknownAccount) {
		return acc, err
	}
	now := c.now()
	if err := tx.QueryRow(ctx, `INSERT INTO accounts (created_at) VALUES ($1) RETURNING id`, c.t(now)).Scan(&acc); err != nil {
		return 0, fmt.Errorf("create account: %w", err)
	}
	n, err := tx.Exec(ctx, `INSERT INTO identities (platform, external_id, account_id, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (platform, external_id) DO NOTHING`,
		id.Platform, id.ExternalID, acc, c.t(now))
	if err != nil {
		return 0, fmt.Errorf("create identity: %w", err)
	}
	if n == 0 {
		// Another transaction created this identity first; it can only happen on
		// PostgreSQL, where the insert waited for it. Use its account.
		return 0, errRetry
	}
	for _, b := range billing.Buckets {
		if _, err := tx.Exec(ctx, `INSERT INTO balances (account_id, bucket, posted, held, updated_at) VALUES ($1, $2, 0, 0, $3)`,
			acc, string(b), c.t(now)); err != nil {
			return 0, fmt.Errorf("create balance: %w", err)
		}
	}
	return acc, nil
}

// errRetry asks inTxRetry to run the transaction again: a concurrent
// transaction won a race this one can now observe.
var errRetry = errors.New("retry transaction")

// inTxRetry is inTx for transactions that may lose a creation race once.
func (c *Core) inTxRetry(ctx context.Context, fn func(tx Querier) error) error {
	for attempt := 0; ; attempt++ {
		err := c.inTx(ctx, fn)
		if !errors.Is(err, errRetry) || attempt == 3 {
			return err
		}
	}
}

func accountOf(ctx context.Context, q Querier, id billing.Identity) (billing.AccountID, error) {
	var acc billing.AccountID
	err := q.QueryRow(ctx, `SELECT account_id FROM identities WHERE platform = $1 AND external_id = $2`,
		id.Platform, id.ExternalID).Scan(&acc)
	if errors.Is(err, ErrNoRows) {
		return 0, fmt.Errorf("%w: %s", billing.ErrUnknownAccount, id)
	}
	if err != nil {
		return 0, fmt.Errorf("find account of %s: %w", id, err)
	}
	return acc, nil
}

// AccountOf implements billing.Accounts.
func (c *Core) AccountOf(ctx context.Context, id billing.Identity) (billing.AccountID, error) {
	if err := id.Validate(); err != nil {
		return 0, err
	}
	return accountOf(ctx, c.DB, id)
}

// Account implements billing.Accounts.
func (c *Core) Account(ctx context.Context, id billing.AccountID) (billing.Account, error) {
	a := billing.Account{ID: id}
	err := c.DB.QueryRow(ctx, `SELECT created_at FROM accounts WHERE id = $1`, id).Scan(tc(&a.CreatedAt))
	if errors.Is(err, ErrNoRows) {
		return a, fmt.Errorf("%w: account %d", billing.ErrUnknownAccount, id)
	}
	if err != nil {
		return a, fmt.Errorf("read account: %w", err)
	}
	rows, err := c.DB.Query(ctx, `SELECT platform, external_id FROM identities WHERE account_id = $1 ORDER BY created_at, platform`, id)
	if err != nil {
		return a, fmt.Errorf("read identities: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var i billing.Identity
		if err := rows.Scan(&i.Platform, &i.ExternalID); err != nil {
			return a, err
		}
		a.Identities = append(a.Identities, i)
	}
	return a, rows.Err()
}

// LinkIdentity implements billing.Accounts.
func (c *Core) LinkIdentity(ctx context.Context, have, add billing.Identity) (billing.AccountID, error) {
	if err := have.Validate(); err != nil {
		return 0, err
	}
	if err := add.Validate(); err != nil {
		return 0, err
	}
	var acc billing.AccountID
	err := c.inTx(ctx, func(tx Querier) error {
		var err error
		acc, err = c.linkTx(ctx, tx, have, add)
		return err
	})
	return acc, err
}

// linkTx joins add to have's account inside the caller's transaction.
func (c *Core) linkTx(ctx context.Context, tx Querier, have, add billing.Identity) (billing.AccountID, error) {
	acc, err := accountOf(ctx, tx, have)
	if err != nil {
		return 0, err
	}
	var samePlatform int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM identities WHERE account_id = $1 AND platform = $2 AND external_id <> $3`,
		acc, add.Platform, add.ExternalID).Scan(&samePlatform); err != nil {
		return 0, err
	}
	if samePlatform > 0 {
		return 0, fmt.Errorf("%w: this account already has a %s identity", billing.ErrLinkConflict, add.Platform)
	}
	other, err := accountOf(ctx, tx, add)
	switch {
	case err == nil && other == acc:
		return acc, nil // already linked
	case err == nil:
		var entries int
		// An account whose only entry is its welcome grant may be joined: the
		// grant stays behind with it (billing.WelcomeReference says the rule).
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE account_id = $1
			AND NOT (kind = 'grant' AND reference = $2)`, other, billing.WelcomeReference).Scan(&entries); err != nil {
			return 0, err
		}
		if entries > 0 {
			return 0, fmt.Errorf("%w: %s already has its own wallet with activity", billing.ErrLinkConflict, add)
		}
		_, err = tx.Exec(ctx, `UPDATE identities SET account_id = $1 WHERE platform = $2 AND external_id = $3`,
			acc, add.Platform, add.ExternalID)
		return acc, err
	case errors.Is(err, billing.ErrUnknownAccount):
		_, err = tx.Exec(ctx, `INSERT INTO identities (platform, external_id, account_id, created_at) VALUES ($1, $2, $3, $4)`,
			add.Platform, add.ExternalID, acc, c.t(c.now()))
		return acc, err
	default:
		return 0, err
	}
}

// CreateLinkCode implements billing.Accounts.
func (c *Core) CreateLinkCode(ctx context.Context, owner billing.Identity, code string, ttl time.Duration, maxPerHour int) error {
	return c.inTx(ctx, func(tx Querier) error {
		if _, err := accountOf(ctx, tx, owner); err != nil {
			return err
		}
		now := c.now()
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM link_codes WHERE platform = $1 AND external_id = $2 AND created_at > $3`,
			owner.Platform, owner.ExternalID, c.t(now.Add(-time.Hour))).Scan(&n); err != nil {
			return err
		}
		if n >= maxPerHour {
			return billing.ErrRateLimited
		}
		_, err := tx.Exec(ctx, `INSERT INTO link_codes (code, platform, external_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			code, owner.Platform, owner.ExternalID, c.t(now), c.t(now.Add(ttl)))
		return err
	})
}

// RedeemLinkCode implements billing.Accounts.
func (c *Core) RedeemLinkCode(ctx context.Context, code string, who billing.Identity, maxPerHour int) (billing.AccountID, error) {
	// The attempt is recorded in a transaction of its own, so that a wrong
	// code (whose transaction rolls back) still counts.
	err := c.inTx(ctx, func(tx Querier) error {
		if c.Dialect.KeyLock != "" { // concurrent attempts must not all see room
			if _, err := tx.Exec(ctx, c.Dialect.KeyLock, "link-attempts:"+who.String()); err != nil {
				return err
			}
		}
		now := c.now()
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM link_attempts WHERE platform = $1 AND external_id = $2 AND at > $3`,
			who.Platform, who.ExternalID, c.t(now.Add(-time.Hour))).Scan(&n); err != nil {
			return err
		}
		if n >= maxPerHour {
			return billing.ErrRateLimited
		}
		_, err := tx.Exec(ctx, `INSERT INTO link_attempts (platform, external_id, at) VALUES ($1, $2, $3)`, who.Platform, who.ExternalID, c.t(now))
		return err
	})
	if err != nil {
		return 0, err
	}
	var acc billing.AccountID
	err = c.inTx(ctx, func(tx Querier) error {
		now := c.now()
		var owner billing.Identity
		err := tx.QueryRow(ctx, `SELECT platform, external_id FROM link_codes WHERE code = $1 AND used_at IS NULL AND expires_at > $2`+c.Dialect.ForUpdate,
			code, c.t(now)).Scan(&owner.Platform, &owner.ExternalID)
		if errors.Is(err, ErrNoRows) {
			return billing.ErrNotFound
		}
		if err != nil {
			return err
		}
		if owner.Platform == who.Platform {
			return fmt.Errorf("%w: enter the code on your other platform, not on %s", billing.ErrLinkConflict, who.Platform)
		}
		if acc, err = c.linkTx(ctx, tx, owner, who); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE link_codes SET used_at = $2, used_by = $3 WHERE code = $1`, code, c.t(now), who.String())
		return err
	})
	return acc, err
}

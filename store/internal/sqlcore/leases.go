package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/research"
)

// liveStates are the states a run's lease matters in.
const liveStates = `('queued', 'running', 'pausing', 'cancelling')`

// ClaimRun implements research.Store.
func (c *Core) ClaimRun(ctx context.Context, id, owner string, now, until time.Time) error {
	// The common case in one statement: a live run nobody else holds.
	n, err := c.DB.Exec(ctx, `UPDATE runs SET lease_owner = $2, lease_until = $3 WHERE id = $1 AND state IN `+liveStates+`
		AND (lease_owner IS NULL OR lease_owner = '' OR lease_owner = $2 OR lease_until IS NULL OR lease_until <= $4)`,
		id, owner, c.t(until), c.t(now))
	if err != nil {
		return fmt.Errorf("claim run: %w", err)
	}
	if n == 1 {
		return nil
	}
	// Say why not (or claim it, if it changed meanwhile).
	return c.inTx(ctx, func(tx Querier) error {
		var state string
		var holder *string
		var at time.Time
		err := tx.QueryRow(ctx, `SELECT state, lease_owner, lease_until FROM runs WHERE id = $1`+c.Dialect.ForUpdate, id).Scan(&state, &holder, tc(&at))
		if errors.Is(err, ErrNoRows) {
			return fmt.Errorf("%w: run %q", research.ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("claim run: %w", err)
		}
		if st := research.State(state); st.Terminal() || st == research.Paused {
			return fmt.Errorf("%w: run is %s", research.ErrWrongState, st)
		}
		if holder != nil && *holder != "" && *holder != owner && !at.IsZero() && at.After(now) {
			return research.ErrLeaseHeld
		}
		_, err = tx.Exec(ctx, `UPDATE runs SET lease_owner = $2, lease_until = $3 WHERE id = $1`, id, owner, c.t(until))
		return err
	})
}

// RenewLease implements research.Store.
func (c *Core) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	n, err := c.DB.Exec(ctx, `UPDATE runs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2`, id, owner, c.t(until))
	if err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	if n == 0 {
		return research.ErrLeaseLost
	}
	return nil
}

// ReleaseLease implements research.Store.
func (c *Core) ReleaseLease(ctx context.Context, id, owner string) error {
	q := `UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2`
	if c.local() {
		q += ` AND state NOT IN ` + liveStates // its liveness while it waits for a retry here
	}
	if _, err := c.DB.Exec(ctx, q, id, owner); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// RenewLeases implements research.Store.
func (c *Core) RenewLeases(ctx context.Context, owner string, until time.Time) (int64, error) {
	n, err := c.DB.Exec(ctx, `UPDATE runs SET lease_until = $2 WHERE lease_owner = $1 AND state IN `+liveStates, owner, c.t(until))
	if err != nil {
		return 0, fmt.Errorf("renew leases: %w", err)
	}
	return n, nil
}

func (c *Core) local() bool { return c.Queue != nil && c.Queue.Local() }

// leaseQueued leases a run just enqueued on a local queue to the process
// that queued it (research.WithHolder), in the enqueuing transaction: no
// other process works that queue, so without a lease a run that never
// started would look the same whether its process is alive or dead.
func (c *Core) leaseQueued(ctx context.Context, tx Querier, id string) error {
	owner, until, ok := research.HolderOf(ctx)
	if !ok || !c.local() {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE runs SET lease_owner = $2, lease_until = $3 WHERE id = $1`, id, owner, c.t(until)); err != nil {
		return fmt.Errorf("lease queued run: %w", err)
	}
	return nil
}

// LapsedRuns implements research.Store.
func (c *Core) LapsedRuns(ctx context.Context, now time.Time, limit int) ([]research.Run, error) {
	return c.runsWhere(ctx, `lease_until IS NOT NULL AND lease_until < $1 AND state IN `+liveStates+` ORDER BY lease_until LIMIT $2`, c.t(now), limit)
}

// TakeOverRun implements research.Store.
func (c *Core) TakeOverRun(ctx context.Context, id string, now time.Time, timeout time.Duration) (research.Run, error) {
	if c.Queue == nil {
		return research.Run{}, fmt.Errorf("take over: no job queue configured")
	}
	var out research.Run
	err := c.inNativeTx(ctx, func(tx Tx) error {
		r, before, _, err := c.lockRun(ctx, tx, id)
		if err != nil {
			return err
		}
		var at time.Time
		if err := tx.QueryRow(ctx, `SELECT lease_until FROM runs WHERE id = $1`, id).Scan(tc(&at)); err != nil {
			return fmt.Errorf("take over: %w", err)
		}
		switch r.State {
		case research.Queued, research.Running, research.Pausing, research.Cancelling:
		default:
			return fmt.Errorf("%w: run is %s", research.ErrWrongState, r.State)
		}
		if at.IsZero() || !at.Before(now) {
			return fmt.Errorf("%w: the run's lease is live", research.ErrWrongState)
		}
		// The dead job is marked cancelled (River's rescuer then finishes
		// it without running it); the new one resumes the run.
		if r.JobID != 0 {
			if err := c.Queue.CancelTx(ctx, tx.Native(), r.JobID); err != nil {
				return fmt.Errorf("cancel the dead job: %w", err)
			}
		}
		if r.JobID, err = c.Queue.EnqueueTx(ctx, tx.Native(), r.ID, timeout); err != nil {
			return fmt.Errorf("enqueue run: %w", err)
		}
		r.UpdatedAt = c.now()
		if err := c.storeRun(ctx, tx, &r, before); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = $1`, id); err != nil {
			return fmt.Errorf("take over: %w", err)
		}
		if err := c.leaseQueued(ctx, tx, id); err != nil {
			return err
		}
		out = r
		return c.insertTransition(ctx, tx, r.ID, r.State, r.State, "watcher", "taken over: its process stopped renewing the lease", r.UpdatedAt)
	})
	return out, err
}

// EndedLapsed implements research.Store.
func (c *Core) EndedLapsed(ctx context.Context, now time.Time, limit int) ([]research.Run, error) {
	return c.runsWhere(ctx, `lease_until IS NOT NULL AND lease_until < $1 AND state IN `+terminalStates+` ORDER BY lease_until LIMIT $2`, c.t(now), limit)
}

// ClearLapsedLease implements research.Store.
func (c *Core) ClearLapsedLease(ctx context.Context, id string, now time.Time) (bool, error) {
	n, err := c.DB.Exec(ctx, `UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_until IS NOT NULL AND lease_until < $2`, id, c.t(now))
	if err != nil {
		return false, fmt.Errorf("clear lease: %w", err)
	}
	return n == 1, nil
}

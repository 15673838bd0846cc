package sqlcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tokensforge/forgebot/billing"
)

const receiptCols = `public_id, run_id, account_id, COALESCE(hold_id, 0), model, route, route_kind, bucket, tokens_in, tokens_out,
	tokens_in_source, tokens_out_source, held, captured, released, status, attempts, notes, started_at, finished_at, created_at, purchase, steps`

// SaveReceipt implements billing.Receipts.
func (c *Core) SaveReceipt(ctx context.Context, r billing.Receipt) (billing.Receipt, error) {
	if r.PublicID == "" {
		r.PublicID = billing.NewPublicID()
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = c.now()
	}
	if err := c.insertReceipt(ctx, c.DB, r); err != nil {
		return r, err
	}
	return c.Receipt(ctx, r.PublicID)
}

// insertReceipt inserts or replaces a receipt with q (the pool or a transaction).
func (c *Core) insertReceipt(ctx context.Context, q Querier, r billing.Receipt) error {
	var holdID any
	if r.HoldID != 0 {
		holdID = r.HoldID
	}
	steps := ""
	if len(r.Steps) > 0 {
		b, err := json.Marshal(r.Steps)
		if err != nil {
			return fmt.Errorf("save receipt steps: %w", err)
		}
		steps = string(b)
	}
	_, err := q.Exec(ctx, `INSERT INTO receipts (`+receiptColsPlain+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
		ON CONFLICT (public_id) DO UPDATE SET
			hold_id = excluded.hold_id, model = excluded.model, route = excluded.route, route_kind = excluded.route_kind,
			bucket = excluded.bucket, tokens_in = excluded.tokens_in, tokens_out = excluded.tokens_out,
			tokens_in_source = excluded.tokens_in_source, tokens_out_source = excluded.tokens_out_source,
			held = excluded.held, captured = excluded.captured, released = excluded.released, status = excluded.status,
			attempts = excluded.attempts, notes = excluded.notes, started_at = excluded.started_at, finished_at = excluded.finished_at,
			purchase = excluded.purchase, steps = excluded.steps`,
		r.PublicID, r.RunID, r.AccountID, holdID, r.Model, r.Route, string(r.RouteKind), string(r.Bucket), r.TokensIn, r.TokensOut,
		string(r.TokensInSource), string(r.TokensOutSource), int64(r.Held), int64(r.Captured), int64(r.Released), r.Status,
		r.Attempts, r.Notes, c.nullTime(r.StartedAt), c.nullTime(r.FinishedAt), c.t(r.CreatedAt), r.Purchase, steps)
	if err != nil {
		return fmt.Errorf("save receipt: %w", err)
	}
	return nil
}

const receiptColsPlain = `public_id, run_id, account_id, hold_id, model, route, route_kind, bucket, tokens_in, tokens_out,
	tokens_in_source, tokens_out_source, held, captured, released, status, attempts, notes, started_at, finished_at, created_at, purchase, steps`

// Receipt implements billing.Receipts.
func (c *Core) Receipt(ctx context.Context, publicID string) (billing.Receipt, error) {
	var r billing.Receipt
	var steps string
	err := c.DB.QueryRow(ctx, `SELECT `+receiptCols+` FROM receipts WHERE public_id = $1`, publicID).Scan(
		&r.PublicID, &r.RunID, &r.AccountID, &r.HoldID, &r.Model, &r.Route, &r.RouteKind, &r.Bucket, &r.TokensIn, &r.TokensOut,
		&r.TokensInSource, &r.TokensOutSource, &r.Held, &r.Captured, &r.Released, &r.Status, &r.Attempts, &r.Notes,
		tc(&r.StartedAt), tc(&r.FinishedAt), tc(&r.CreatedAt), &r.Purchase, &steps)
	if err == nil && steps != "" {
		if jerr := json.Unmarshal([]byte(steps), &r.Steps); jerr != nil {
			return r, fmt.Errorf("read receipt steps: %w", jerr)
		}
	}
	if errors.Is(err, ErrNoRows) {
		return r, billing.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("read receipt: %w", err)
	}
	return r, nil
}

// RecordFailedRequest implements billing.Receipts.
func (c *Core) RecordFailedRequest(ctx context.Context, f billing.FailedRequest) (billing.FailedRequest, error) {
	if f.At.IsZero() {
		f.At = c.now()
	}
	err := c.DB.QueryRow(ctx, `INSERT INTO failed_requests
		(run_id, account_id, route, bucket, http_status, error_class, charged, detail, occurred_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		f.RunID, f.AccountID, f.Route, string(f.Bucket), f.HTTPStatus, f.ErrorClass, int64(f.Charged), f.Detail, c.t(f.At)).Scan(&f.ID)
	if err != nil {
		return f, fmt.Errorf("record failed request: %w", err)
	}
	return f, nil
}

// FailedRequests implements billing.Receipts.
func (c *Core) FailedRequests(ctx context.Context, runID string) ([]billing.FailedRequest, error) {
	rows, err := c.DB.Query(ctx, `SELECT id, run_id, account_id, route, bucket, http_status, error_class, charged, detail, occurred_at
		FROM failed_requests WHERE run_id = $1 ORDER BY id`, runID)
	if err != nil {
		return nil, fmt.Errorf("read failed requests: %w", err)
	}
	defer rows.Close()
	var out []billing.FailedRequest
	for rows.Next() {
		var f billing.FailedRequest
		if err := rows.Scan(&f.ID, &f.RunID, &f.AccountID, &f.Route, &f.Bucket, &f.HTTPStatus, &f.ErrorClass, &f.Charged,
			&f.Detail, tc(&f.At)); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

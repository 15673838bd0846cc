package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokensforge/forgebot/research"
)

var _ research.RouteQueue = (*Store)(nil)

// EnterRoute implements research.RouteQueue: the route's gate row is the
// lock every admission on the route takes, so instances admit one at a time.
func (s *Store) EnterRoute(ctx context.Context, route string, tokens int64, lim research.RouteLimits, now, until time.Time) (int64, research.RouteLine, error) {
	var (
		id   int64
		line research.RouteLine
	)
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		g, err := lockGate(ctx, tx, route, now)
		if err != nil {
			return err
		}
		// What ended more than a minute ago counts for nothing: dropped.
		if _, err := tx.Exec(ctx, `DELETE FROM route_tickets WHERE route = $1 AND (seen_until < $2 OR left_at IS NOT NULL)
			AND coalesce(admitted_at, created_at) < $3 AND coalesce(left_at, seen_until) < $3`, route, now, now.Add(-time.Minute-research.RouteMargin)); err != nil {
			return fmt.Errorf("prune route line: %w", err)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO route_tickets (route, tokens, created_at, seen_until) VALUES ($1, $2, $3, $4) RETURNING id`,
			route, tokens, now, until).Scan(&id); err != nil {
			return fmt.Errorf("join route line: %w", err)
		}
		line, err = admitTx(ctx, tx, g, route, id, tokens, lim, now, until)
		return err
	})
	return id, line, err
}

// AdmitRoute implements research.RouteQueue.
func (s *Store) AdmitRoute(ctx context.Context, route string, ticket int64, lim research.RouteLimits, now, until time.Time) (research.RouteLine, error) {
	var line research.RouteLine
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var (
			tokens   int64
			admitted *time.Time
			left     *time.Time
		)
		err := tx.QueryRow(ctx, `SELECT tokens, admitted_at, left_at FROM route_tickets WHERE id = $1`, ticket).Scan(&tokens, &admitted, &left)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && left != nil) {
			line.Admitted = true // gone: nothing to hold it back for
			return nil
		}
		if err != nil {
			return fmt.Errorf("read route ticket: %w", err)
		}
		if admitted != nil { // a call in flight renewing its lease
			line.Admitted = true
			_, err := tx.Exec(ctx, `UPDATE route_tickets SET seen_until = $2 WHERE id = $1`, ticket, until)
			return err
		}
		g, err := lockGate(ctx, tx, route, now)
		if err != nil {
			return err
		}
		line, err = admitTx(ctx, tx, g, route, ticket, tokens, lim, now, until)
		return err
	})
	return line, err
}

// LeaveRoute implements research.RouteQueue.
func (s *Store) LeaveRoute(ctx context.Context, route string, ticket int64, now time.Time) error {
	_, err := s.Pool.Exec(ctx, `UPDATE route_tickets SET left_at = $2 WHERE id = $1 AND left_at IS NULL`, ticket, now)
	if err != nil {
		return fmt.Errorf("leave route line: %w", err)
	}
	return nil
}

// ThrottleRoute implements research.RouteQueue.
func (s *Store) ThrottleRoute(ctx context.Context, route string, now time.Time, pause time.Duration) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		g, err := lockGate(ctx, tx, route, now)
		if err != nil {
			return err
		}
		until := now.Add(pause)
		if g.pausedUntil.After(until) {
			until = g.pausedUntil
		}
		_, err = tx.Exec(ctx, `UPDATE route_gates SET factor = $2, factor_at = $3, paused_until = $4 WHERE route = $1`,
			route, research.ThrottledFactor(g.factor(now)), now, until)
		return err
	})
}

// PeekRoute implements research.RouteQueue.
func (s *Store) PeekRoute(ctx context.Context, route string, now time.Time) (research.RouteLine, error) {
	var line research.RouteLine
	g := gate{f: 1, at: now}
	err := s.Pool.QueryRow(ctx, `SELECT factor, factor_at, paused_until FROM route_gates WHERE route = $1`, route).Scan(&g.f, &g.at, &g.pausedUntil)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return line, fmt.Errorf("read route gate: %w", err)
	}
	if err := readLine(ctx, s.Pool, &line, route, 0, now); err != nil {
		return line, err
	}
	line.Factor, line.PausedUntil = g.factor(now), g.pausedUntil
	return line, nil
}

type gate struct {
	f           float64
	at          time.Time
	pausedUntil time.Time
}

func (g gate) factor(now time.Time) float64 { return research.RouteFactor(g.f, g.at, now) }

// lockGate reads (creating it first if needed) and locks the route's gate row.
func lockGate(ctx context.Context, tx pgx.Tx, route string, now time.Time) (gate, error) {
	var g gate
	if _, err := tx.Exec(ctx, `INSERT INTO route_gates (route, factor, factor_at, paused_until) VALUES ($1, 1, $2, $2) ON CONFLICT (route) DO NOTHING`, route, now); err != nil {
		return g, fmt.Errorf("route gate: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT factor, factor_at, paused_until FROM route_gates WHERE route = $1 FOR UPDATE`, route).Scan(&g.f, &g.at, &g.pausedUntil); err != nil {
		return g, fmt.Errorf("route gate: %w", err)
	}
	return g, nil
}

// admitTx admits a waiting ticket if it is first and lim has room, under
// the route's lock; either way the ticket stays live until until.
func admitTx(ctx context.Context, tx pgx.Tx, g gate, route string, ticket, tokens int64, lim research.RouteLimits, now, until time.Time) (research.RouteLine, error) {
	var line research.RouteLine
	if err := readLine(ctx, tx, &line, route, ticket, now); err != nil {
		return line, err
	}
	line.Factor, line.PausedUntil = g.factor(now), g.pausedUntil
	var admitted *time.Time
	if research.Admits(lim, line, tokens, now) {
		line.Admitted, admitted = true, &now
	}
	if _, err := tx.Exec(ctx, `UPDATE route_tickets SET seen_until = $2, admitted_at = coalesce($3, admitted_at) WHERE id = $1`, ticket, until, admitted); err != nil {
		return line, fmt.Errorf("admit route ticket: %w", err)
	}
	return line, nil
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readLine reads the calls waiting before ticket (all waiting when ticket
// is 0) and the route's admissions in flight and in the last minute.
func readLine(ctx context.Context, q rowQuerier, line *research.RouteLine, route string, ticket int64, now time.Time) error {
	err := q.QueryRow(ctx, `SELECT count(*), coalesce(sum(tokens), 0) FROM route_tickets
		WHERE route = $1 AND admitted_at IS NULL AND left_at IS NULL AND seen_until > $2 AND ($3::bigint = 0 OR id < $3::bigint)`,
		route, now, ticket).Scan(&line.Ahead, &line.AheadTokens)
	if err != nil {
		return fmt.Errorf("read route line: %w", err)
	}
	line.First = line.Ahead == 0
	var avg float64
	err = q.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE left_at IS NULL AND seen_until > $2),
			count(*) FILTER (WHERE admitted_at > $3),
			count(*) FILTER (WHERE admitted_at > $4),
			coalesce(sum(tokens) FILTER (WHERE admitted_at > $3), 0),
			coalesce(sum(tokens) FILTER (WHERE admitted_at > $4), 0),
			coalesce(avg(extract(epoch FROM left_at - admitted_at)) FILTER (WHERE left_at > $3), 0)
		FROM route_tickets WHERE route = $1 AND admitted_at IS NOT NULL AND (left_at IS NULL OR left_at > $3 OR admitted_at > $3)`,
		// An admission counts RouteMargin longer than the window it is in.
		route, now, now.Add(-time.Minute-research.RouteMargin), now.Add(-10*time.Second-research.RouteMargin)).
		Scan(&line.InFlight, &line.Started, &line.Started10, &line.Tokens, &line.Tokens10, &avg)
	if err != nil {
		return fmt.Errorf("read route admissions: %w", err)
	}
	line.AvgCall = time.Duration(avg * float64(time.Second))
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// demoPrice is what the demo charges per 1M tokens: the billing story is
// visible even though no model is called.
var demoPrice = billing.Price{InputPerM: 150_000, OutputPerM: 600_000}

// cmdDemo walks one paid run through the wallet on the configured store
// (the embedded SQLite file by default): a one-time grant, a quote, a hold,
// a partial capture, a receipt and the ledger check. The research engine and
// the console chat replace this walk-through when they land.
func cmdDemo(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if err := parseFlags(flags("demo"), args); err != nil {
		return err
	}
	s, err := openStore(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		return fmt.Errorf("demo: migrate: %w", err)
	}
	user := billing.Identity{Platform: "cli", ExternalID: "demo"}
	for _, g := range []struct {
		bucket billing.Bucket
		amount billing.Money
	}{{billing.BucketCredit, 5 * billing.Micro}, {billing.BucketRouted, 2 * billing.Micro}} {
		e, err := s.Post(ctx, billing.PostRequest{
			Identity: user, Bucket: g.bucket, Kind: billing.KindGrant, Amount: g.amount,
			Key: "demo-grant:" + user.String() + ":" + string(g.bucket), Reference: "demo grant", Actor: "demo",
		})
		if err != nil {
			return fmt.Errorf("demo: grant: %w", err)
		}
		if !e.Replayed {
			fmt.Fprintf(stdout, "Granted %s %s to %s (once per user).\n", g.amount, g.bucket, user)
		}
	}
	acc, err := s.AccountOf(ctx, user)
	if err != nil {
		return err
	}

	const estIn, estOutMax, usedOut = 6_000, 3_000, 1_420
	hold := demoPrice.Cost(estIn, estOutMax)
	bal, err := s.Balances(ctx, acc)
	if err != nil {
		return err
	}
	credit := bal[billing.BucketCredit]
	fmt.Fprintf(stdout, "\nQuote (demo price %s)\n", demoPrice)
	fmt.Fprintf(stdout, "  pays from: credit, available %s, left after the hold %s\n", credit.Available, credit.Available-hold)
	fmt.Fprintf(stdout, "  estimate:  %d tokens in, up to %d out; cost %s to %s (held: %s)\n",
		estIn, estOutMax, demoPrice.Cost(estIn, 0), hold, hold)

	runID := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	h, err := s.PlaceHold(ctx, billing.HoldRequest{
		AccountID: acc, Bucket: billing.BucketCredit, Amount: hold, TTL: 15 * time.Minute,
		Key: runID + ":hold", Reference: "run:" + runID, Actor: user.String(),
	})
	if errors.Is(err, billing.ErrInsufficientFunds) {
		fmt.Fprintf(stdout, "  not enough credit for this run (short by %s): top up with `forgebot wallet topup --user %s ...`\n",
			hold-credit.Available, user)
		return nil
	}
	if err != nil {
		return fmt.Errorf("demo: hold: %w", err)
	}
	fmt.Fprintf(stdout, "\nConfirmed: hold %d placed for %s.\n", h.ID, h.Amount)
	charge := demoPrice.Cost(estIn, usedOut)
	started := time.Now()
	c, err := s.CaptureHold(ctx, billing.CaptureRequest{HoldID: h.ID, Amount: charge, Key: runID + ":capture", Actor: "demo"})
	if err != nil {
		return fmt.Errorf("demo: capture: %w", err)
	}
	r, err := s.SaveReceipt(ctx, billing.Receipt{
		RunID: runID, AccountID: acc, HoldID: h.ID, Model: "demo", Route: "demo", RouteKind: billing.RouteOfficial,
		Bucket: billing.BucketCredit, TokensIn: estIn, TokensOut: usedOut, TokensInSource: billing.UsageLocal,
		TokensOutSource: billing.UsageLocal, Held: h.Amount, Captured: c.Captured, Released: c.Released(),
		Status: "succeeded", Attempts: 1, StartedAt: started, FinishedAt: time.Now(),
	})
	if err != nil {
		return fmt.Errorf("demo: receipt: %w", err)
	}
	fmt.Fprintf(stdout, "Settled: %d tokens in, %d out: charged %s, released %s. Receipt %s\n",
		estIn, usedOut, c.Captured, c.Released(), r.PublicID)
	fmt.Fprintln(stdout, "(The research engine and console chat are not built yet; this run called no model.)")

	fmt.Fprintln(stdout, "\nWallet")
	if err := cmdShow(ctx, cfg, []string{"--user", user.String()}, stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nLatest ledger entries")
	if err := cmdLedger(ctx, cfg, []string{"--user", user.String(), "--limit", "5"}, stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	return cmdCheck(ctx, cfg, nil, stdout)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// flags makes a FlagSet that reports errors to us instead of printing usage.
// helpRequested is -h or --help on a command: its usage goes to stdout and
// the exit status is 0.
type helpRequested struct{ fs *flag.FlagSet }

func (h *helpRequested) Error() string { return h.fs.Name() + ": help requested" }

// flagError turns a flag parse error into help or bad input.
func flagError(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return &helpRequested{fs}
	}
	return badInput("%s: %v", fs.Name(), err)
}

// printHelp writes a command's usage lines (from the overall usage) and its flags.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "Usage:")
	for _, line := range strings.Split(usage, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "forgebot "+fs.Name()+" ") || strings.TrimSpace(line) == "forgebot "+fs.Name() ||
			strings.HasPrefix(strings.TrimSpace(line), "forgebot "+fs.Name()+"  ") {
			fmt.Fprintln(w, line)
		}
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return flagError(fs, err)
	}
	// The flag package lets a repeated flag's last value win; for money
	// commands that is ambiguous (--amount 1 --amount 2), so it is refused.
	seen := map[string]bool{}
	for _, a := range args[:len(args)-fs.NArg()] {
		name, ok := strings.CutPrefix(a, "-")
		if !ok || a == "--" {
			continue
		}
		name, _, _ = strings.Cut(strings.TrimPrefix(name, "-"), "=")
		if fs.Lookup(name) == nil {
			continue
		}
		if seen[name] {
			return badInput("%s: --%s is given more than once", fs.Name(), name)
		}
		seen[name] = true
	}
	if fs.NArg() > 0 {
		return badInput("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func parseUser(name, s string) (billing.Identity, error) {
	if s == "" {
		return billing.Identity{}, badInput("%s: --user is required, like --user telegram:42", name)
	}
	id, err := billing.ParseIdentity(s)
	if err != nil {
		return id, badInput("%s: %v", name, err)
	}
	return id, nil
}

func cmdMigrate(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if err := parseFlags(flags("migrate"), args); err != nil {
		return err
	}
	s, err := openStore(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer s.Close()
	applied, err := s.Migrate(ctx)
	for _, name := range applied {
		fmt.Fprintf(stdout, "applied %s\n", name)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema is up to date")
	}
	return nil
}

func cmdTopup(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flags("wallet topup")
	user := fs.String("user", "", "who: platform:id")
	bucket := fs.String("bucket", "", "credit or routed")
	amount := fs.String("amount", "", "dollars, like 5.00")
	key := fs.String("key", "", "idempotency key: the same key never tops up twice")
	note := fs.String("note", "", "operator note")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	id, err := parseUser(fs.Name(), *user)
	if err != nil {
		return err
	}
	b, err := billing.ParseBucket(*bucket)
	if err != nil {
		return badInput("wallet topup: --bucket: %v", err)
	}
	if *amount == "" {
		return badInput("wallet topup: --amount is required, like --amount 5.00")
	}
	m, err := billing.ParseMoney(*amount)
	if err != nil {
		return badInput("wallet topup: --amount: %v", err)
	}
	if m <= 0 {
		return badInput("wallet topup: --amount must be more than zero, got %s", m)
	}
	if strings.TrimSpace(*key) == "" {
		return badInput("wallet topup: --key is required, so a repeated command cannot top up twice")
	}
	if err := billing.CheckKey(*key); err != nil {
		return badInput("wallet topup: --key: %v", err)
	}
	s, err := openStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer s.Close()
	ref := "operator"
	if *note != "" {
		ref = "operator: " + *note
	}
	e, err := s.Post(ctx, billing.PostRequest{
		Identity: id, Bucket: b, Kind: billing.KindTopup, Amount: m, Key: *key, Reference: ref, Actor: "cli",
	})
	if errors.Is(err, billing.ErrIdempotencyConflict) {
		return badInput("wallet topup: --key %q was already used for a different top-up; nothing changed", *key)
	}
	if err != nil {
		return fmt.Errorf("wallet topup: %w", err)
	}
	bal, err := s.Balances(ctx, e.AccountID)
	if err != nil {
		return err
	}
	verb := "topped up"
	if e.Replayed {
		verb = "already applied (same --key):"
	}
	fmt.Fprintf(stdout, "%s %s %s %s (entry %d); %s available %s\n", verb, id, e.Bucket, e.Amount, e.ID, e.Bucket, bal[e.Bucket].Available)
	return nil
}

// lookup opens the store and finds an existing user's account; it never creates one.
func lookup(ctx context.Context, cfg Config, name, user string) (appStore, billing.AccountID, error) {
	id, err := parseUser(name, user)
	if err != nil {
		return nil, 0, err
	}
	s, err := openStore(ctx, cfg, false)
	if err != nil {
		return nil, 0, err
	}
	acc, err := s.AccountOf(ctx, id)
	if errors.Is(err, billing.ErrUnknownAccount) {
		s.Close()
		return nil, 0, badInput("%s: unknown user %s (no wallet yet: `forgebot wallet topup` creates one)", name, id)
	}
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	return s, acc, nil
}

type bucketJSON struct {
	Posted    int64 `json:"posted_micros"`
	Held      int64 `json:"held_micros"`
	Available int64 `json:"available_micros"`
	Debt      int64 `json:"debt_micros,omitempty"`
}

func cmdShow(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flags("wallet show")
	user := fs.String("user", "", "who: platform:id")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, acc, err := lookup(ctx, cfg, fs.Name(), *user)
	if err != nil {
		return err
	}
	defer s.Close()
	bal, err := s.Balances(ctx, acc)
	if err != nil {
		return err
	}
	if *asJSON {
		out := map[billing.Bucket]bucketJSON{}
		for _, b := range billing.Buckets {
			out[b] = bucketJSON{bal[b].Posted.Micros(), bal[b].Held.Micros(), bal[b].Available.Micros(), bal[b].Debt.Micros()}
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	a, err := s.Account(ctx, acc)
	if err != nil {
		return err
	}
	names := make([]string, len(a.Identities))
	for i, id := range a.Identities {
		names[i] = id.String()
	}
	fmt.Fprintf(stdout, "account %d (%s)\n", acc, strings.Join(names, ", "))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "bucket\tposted\theld\tavailable\tdebt\t")
	for _, b := range billing.Buckets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", b, bal[b].Posted, bal[b].Held, bal[b].Available, bal[b].Debt)
	}
	return tw.Flush()
}

type entryJSON struct {
	ID          int64     `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	Bucket      string    `json:"bucket"`
	Kind        string    `json:"kind"`
	Amount      int64     `json:"amount_micros"`
	PostedDelta int64     `json:"posted_delta_micros"`
	HeldDelta   int64     `json:"held_delta_micros"`
	HoldID      int64     `json:"hold_id,omitempty"`
	Reference   string    `json:"reference"`
	Key         string    `json:"key"`
	Actor       string    `json:"actor"`
	DebtDelta   int64     `json:"debt_delta_micros,omitempty"`
}

func cmdLedger(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flags("wallet ledger")
	user := fs.String("user", "", "who: platform:id")
	limit := fs.Int("limit", 50, "newest N entries (1-1000)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *limit < 1 || *limit > 1000 {
		return badInput("wallet ledger: --limit must be between 1 and 1000, got %d", *limit)
	}
	s, acc, err := lookup(ctx, cfg, fs.Name(), *user)
	if err != nil {
		return err
	}
	defer s.Close()
	entries, err := s.Entries(ctx, acc, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]entryJSON, len(entries))
		for i, e := range entries {
			out[i] = entryJSON{e.ID, e.CreatedAt, string(e.Bucket), string(e.Kind), e.Amount.Micros(), e.PostedDelta.Micros(),
				e.HeldDelta.Micros(), e.HoldID, e.Reference, e.Key, e.Actor, e.DebtDelta.Micros()}
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	// Posted and held are separate columns, signed as they move each
	// balance: a hold, its capture and its release are one amount seen
	// three times, so a single amount column would sum to nonsense. Each
	// column sums to its balance's change.
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "id\ttime (UTC)\tbucket\tkind\tposted ±\theld ±\thold\treference\tactor\t")
	var posted, held billing.Money
	for _, e := range entries {
		hold := ""
		if e.HoldID != 0 {
			hold = fmt.Sprint(e.HoldID)
		}
		ref := e.Reference
		if e.DebtDelta > 0 {
			ref += fmt.Sprintf(" (%s owed)", e.DebtDelta)
		} else if e.DebtDelta < 0 {
			ref += fmt.Sprintf(" (%s of debt paid)", -e.DebtDelta)
		}
		posted += e.PostedDelta
		held += e.HeldDelta
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", e.ID, e.CreatedAt.Format("2006-01-02 15:04:05"), e.Bucket, e.Kind,
			signed(e.PostedDelta), signed(e.HeldDelta), hold, ref, e.Actor)
	}
	fmt.Fprintf(tw, "\t\t\tsum\t%s\t%s\t\t(these %d entries)\t\t\n", signed(posted), signed(held), len(entries))
	return tw.Flush()
}

// signed prints a balance change with its sign, and nothing for none.
func signed(m billing.Money) string {
	switch {
	case m > 0:
		return "+" + m.String()
	case m < 0:
		return m.String()
	}
	return "·"
}

func cmdCheck(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if err := parseFlags(flags("ledger check"), args); err != nil {
		return err
	}
	s, err := openStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer s.Close()
	a, err := s.Audit(ctx)
	if err != nil {
		return fmt.Errorf("ledger check: %w", err)
	}
	violations := billing.Check(a)
	for _, v := range violations {
		fmt.Fprintln(stdout, "violation: "+v.String())
	}
	if len(violations) > 0 {
		return &cliError{code: exitFailure, err: fmt.Errorf("ledger check: %d violation(s)", len(violations))}
	}
	fmt.Fprintf(stdout, "ledger check: ok (%d buckets, %d holds)\n", len(a.Buckets), len(a.Holds))
	return nil
}

func cmdSweep(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if err := parseFlags(flags("ledger sweep"), args); err != nil {
		return err
	}
	s, err := openStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer s.Close()
	n, err := (&billing.Sweeper{Ledger: s}).SweepOnce(ctx)
	if err != nil {
		return fmt.Errorf("ledger sweep: %w", err)
	}
	fmt.Fprintf(stdout, "released %d expired hold(s)\n", n)
	return nil
}

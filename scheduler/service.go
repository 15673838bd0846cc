package scheduler

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/market"
)

// Service makes, lists and fires schedules.
type Service struct {
	Store  Store
	Engine *research.Engine
	// Notify posts a notice to a schedule's chat (a skipped run, say).
	Notify func(ctx context.Context, d research.Destination, text string)
	// NotifyOwner posts to the schedule owner's private chat: a notice's
	// figures (balance, shortfall) never go to the schedule's chat, which
	// may be a group. Without it the figures are not sent at all.
	NotifyOwner   func(ctx context.Context, owner billing.Identity, text string)
	Now           func() time.Time
	MinInterval   time.Duration // default 1 h
	MaxPerAccount int           // default 10
	// MaxProposals bounds an account's schedules proposed and not yet
	// confirmed (default 5); ProposalTTL is how long one waits for its
	// confirm before Prune deletes it (default 1 h).
	MaxProposals int
	ProposalTTL  time.Duration
	CatchUp      time.Duration // a time missed by less than this still runs; default 1 h
	// Reports says whether this process can deliver to a platform's chats;
	// the claimer leaves other platforms' schedules to a process that can
	// (a serve with the adapter, or the console for its own). nil: all.
	Reports func(platform string) bool
	Log     *slog.Logger
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) minInterval() time.Duration {
	if s.MinInterval > 0 {
		return s.MinInterval
	}
	return time.Hour
}

func (s *Service) maxPerAccount() int {
	if s.MaxPerAccount > 0 {
		return s.MaxPerAccount
	}
	return 10
}

func (s *Service) catchUp() time.Duration {
	if s.CatchUp > 0 {
		return s.CatchUp
	}
	return time.Hour
}

// Policy is what a Service's schedules live by, defaults applied; the chat
// shows it with every schedule.
type Policy struct {
	MinInterval   time.Duration // the shortest gap allowed between fire times
	CatchUp       time.Duration // the latest time missed during downtime still runs if at most this late
	MaxPerAccount int           // active and paused schedules per account
}

// Policy returns the settings in force.
func (s *Service) Policy() Policy {
	return Policy{MinInterval: s.minInterval(), CatchUp: s.catchUp(), MaxPerAccount: s.maxPerAccount()}
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Proposal is a schedule's quote: what one run costs, when it fires, what a
// month costs.
type Proposal struct {
	Schedule            Schedule
	Quote               research.Quote
	Next                []time.Time
	PerMonth            int
	MonthLow, MonthHigh billing.Money
}

func newScheduleID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "s" + base64.RawURLEncoding.EncodeToString(b[:])
}

// Propose parses a schedule command and quotes it; nothing runs until Confirm.
func (s *Service) Propose(ctx context.Context, owner billing.Identity, words []string, dest research.Destination) (Proposal, error) {
	var p Proposal
	cmd, err := ParseCommand(words)
	if err != nil {
		return p, err
	}
	spec, err := ParseSpec(cmd.Spec, cmd.Zone)
	if err != nil {
		return p, err
	}
	now := s.now()
	if gap := spec.MinGap(now); gap < s.minInterval() {
		return p, fmt.Errorf("%w: %q fires every %s; the minimum is %s", ErrBadSpec, cmd.Spec, gap, s.minInterval())
	}
	req := research.Request{Kind: cmd.Kind, Symbols: cmd.Symbols, Watchlist: cmd.List, Depth: cmd.Depth, Owner: owner, Dest: dest,
		Question: cmd.Question}
	if cmd.Depth == research.Agent {
		// The schedule's cap is the agent run's; without ask:, nobody is
		// asked: the run wraps up at its cap.
		req.Cap, req.AskAt, req.AskOff = cmd.Cap, cmd.AskAt, cmd.AskAt == 0
	}
	if acc, err := s.Engine.Ledger.AccountOf(ctx, owner); err == nil {
		// Before the quote: a refused proposal fetches no market data.
		counts, err := s.Store.ScheduleCounts(ctx, acc)
		if err != nil {
			return p, err
		}
		if n := counts[Active] + counts[Paused]; n >= s.maxPerAccount() {
			return p, fmt.Errorf("%w: you have %d schedules, the most an account may have", ErrBadSpec, n)
		}
		if n := counts[Proposed]; n >= s.maxProposals() {
			return p, fmt.Errorf("%w: you have %d schedule proposals waiting; confirm or cancel one first (unconfirmed ones lapse after %s)", ErrBadSpec, n, s.proposalTTL())
		}
	}
	q, err := s.Engine.Quote(ctx, req)
	if err != nil {
		return p, err
	}
	p.Quote, p.Next = q, spec.NextN(now, 5)
	p.PerMonth = spec.perMonth(now)
	p.MonthLow, p.MonthHigh = q.CostLow*billing.Money(p.PerMonth), q.CostHigh*billing.Money(p.PerMonth)
	p.Schedule = Schedule{ID: newScheduleID(), AccountID: q.AccountID, Owner: owner, Status: Proposed, Spec: cmd.Spec,
		Zone: spec.Zone.String(), Request: req, Cap: cmd.Cap, CreatedAt: now, CostLow: q.CostLow, CostHigh: q.CostHigh, Bucket: q.Bucket}
	// The quote itself is a preview: it is not confirmed as a run.
	if _, err := s.Engine.Decline(ctx, q.ID, owner); err != nil {
		return p, err
	}
	return p, s.Store.SaveSchedule(ctx, p.Schedule)
}

func (s *Service) maxProposals() int {
	if s.MaxProposals > 0 {
		return s.MaxProposals
	}
	return 5
}

func (s *Service) proposalTTL() time.Duration {
	if s.ProposalTTL > 0 {
		return s.ProposalTTL
	}
	return time.Hour
}

// Prune deletes proposals that waited longer than ProposalTTL for a confirm.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	return s.Store.PruneProposals(ctx, s.now().Add(-s.proposalTTL()))
}

// owned loads a schedule its owner (or a linked identity, or an admin) may change.
func (s *Service) owned(ctx context.Context, id string, who billing.Identity) (Schedule, error) {
	sc, err := s.Store.Schedule(ctx, id)
	if err != nil {
		return sc, err
	}
	if !s.Engine.MayAct(who, sc.Owner) {
		acc, err := s.Engine.Ledger.AccountOf(ctx, who)
		if err != nil || acc != sc.AccountID {
			return sc, research.ErrForbidden
		}
	}
	if sc.Status == Deleted {
		return sc, research.ErrNotFound
	}
	return sc, nil
}

// Confirm activates a proposed schedule.
func (s *Service) Confirm(ctx context.Context, id string, who billing.Identity) (Schedule, error) {
	sc, err := s.owned(ctx, id, who)
	if err != nil {
		return sc, err
	}
	// The limit is counted in the activating transaction: concurrent
	// confirms cannot all see room.
	return s.Store.ActivateSchedule(ctx, id, s.maxPerAccount(), func(sc *Schedule) error {
		if sc.Status != Proposed {
			return fmt.Errorf("%w: the schedule is %s", research.ErrWrongState, sc.Status)
		}
		spec, err := ParseSpec(sc.Spec, sc.Zone)
		if err != nil {
			return err
		}
		sc.Status, sc.NextRunAt = Active, spec.Next(s.now())
		return nil
	})
}

// SetStatus pauses, resumes or deletes a schedule.
func (s *Service) SetStatus(ctx context.Context, id string, who billing.Identity, to Status) (Schedule, error) {
	if _, err := s.owned(ctx, id, who); err != nil {
		return Schedule{}, err
	}
	return s.Store.UpdateSchedule(ctx, id, func(sc *Schedule) error {
		switch {
		case to == Deleted:
		case to == Paused && sc.Status == Active, to == Active && sc.Status == Paused:
			if to == Active {
				// Resuming does not replay what was due while paused.
				spec, err := ParseSpec(sc.Spec, sc.Zone)
				if err != nil {
					return err
				}
				sc.NextRunAt = spec.Next(s.now())
			}
		default:
			return fmt.Errorf("%w: the schedule is %s", research.ErrWrongState, sc.Status)
		}
		sc.Status = to
		return nil
	})
}

// RunNow quotes the schedule's run for now, as a normal quote to confirm.
func (s *Service) RunNow(ctx context.Context, id string, who billing.Identity, dest research.Destination) (research.Quote, error) {
	sc, err := s.owned(ctx, id, who)
	if err != nil {
		return research.Quote{}, err
	}
	req := sc.Request
	req.Owner, req.Dest = who, dest
	req.ScheduleID = sc.ID // its quote, messages and receipt say a schedule made it
	return s.Engine.Quote(ctx, req)
}

// List returns who's schedules (not deleted) with their recent fires.
func (s *Service) List(ctx context.Context, who billing.Identity) ([]Schedule, map[string][]Fire, error) {
	acc, err := s.Engine.Ledger.AccountOf(ctx, who)
	if err != nil {
		return nil, nil, nil
	}
	all, err := s.Store.SchedulesOf(ctx, acc)
	if err != nil {
		return nil, nil, err
	}
	var out []Schedule
	fires := map[string][]Fire{}
	for _, sc := range all {
		if sc.Status == Active || sc.Status == Paused {
			out = append(out, sc)
			if fires[sc.ID], err = s.Store.Fires(ctx, sc.ID, 3); err != nil {
				return nil, nil, err
			}
		}
	}
	return out, fires, nil
}

// decide picks what to do with a due schedule: the latest due time runs if it
// is within the catch-up window; older due times, and a latest one outside
// the window, are recorded as missed.
func (s *Service) decide(now time.Time) func(Schedule) Due {
	return func(sc Schedule) Due {
		if s.Reports != nil && !s.Reports(sc.Request.Dest.Platform) {
			return Due{Skip: true}
		}
		spec, err := ParseSpec(sc.Spec, sc.Zone)
		if err != nil {
			return Due{Next: now.Add(24 * time.Hour)} // cannot happen for a stored schedule; park it
		}
		var due []time.Time
		for t := sc.NextRunAt; !t.IsZero() && !t.After(now) && len(due) < 1000; t = spec.Next(t) {
			due = append(due, t)
		}
		d := Due{Next: spec.Next(now)}
		if len(due) == 0 {
			return d
		}
		last := due[len(due)-1]
		if now.Sub(last) <= s.catchUp() {
			d.Fire, due = &last, due[:len(due)-1]
		}
		if len(due) > 100 {
			due = due[len(due)-100:]
		}
		d.Missed = due
		return d
	}
}

// Claim fires every due schedule once; several instances may claim at once.
func (s *Service) Claim(ctx context.Context) (int, error) {
	n := 0
	for {
		fires, err := s.Store.ClaimDue(ctx, s.now(), 200, s.decide(s.now()))
		n += len(fires)
		if err != nil || len(fires) == 0 {
			return n, err
		}
	}
}

// Run claims due schedules every 250 ms until ctx ends, so a time fires
// well within a second of being due.
//
// While claiming fails (the database is down, say) it backs off, doubling
// the wait from 250 ms up to 30 s, and logs the first failure, then one
// line per backoff step, and one when claiming works again: not 4 a second.
func (s *Service) Run(ctx context.Context) {
	const every, maxWait = 250 * time.Millisecond, 30 * time.Second
	wait, failures := every, 0
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := s.Claim(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			if failures == 1 || wait < maxWait {
				s.log().Error("claim schedules", "err", err, "failures", failures, "next_try_in", min(2*wait, maxWait).String())
			}
			wait = min(2*wait, maxWait)
		case err == nil && failures > 0:
			s.log().Info("claim schedules works again", "after_failures", failures)
			wait, failures = every, 0
		}
		t.Reset(wait)
	}
}

// fireQuoteID derives the quote id of one fire, so a retried fire job finds
// the quote (and its run) instead of making a second.
func fireQuoteID(scheduleID string, at time.Time) string {
	h := sha256.Sum256([]byte(scheduleID + "|" + at.UTC().Format(time.RFC3339)))
	return "q" + base64.RawURLEncoding.EncodeToString(h[:])[:16]
}

// Fire runs one claimed fire time: it is the queue's job for it. The
// outcome is recorded; skips and failures are posted to the schedule's chat.
// An error leaves the time pending for the queue's next attempt. On the last
// attempt, or for an error a retry cannot fix (the quote expired, the route
// went away), the time is recorded as failed with a notice instead: a pending
// fire is never claimed again, so it would otherwise stay pending, unseen.
func (s *Service) Fire(ctx context.Context, scheduleID string, at time.Time, attempt, maxAttempts int) error {
	f, err := s.Store.Fire(ctx, scheduleID, at)
	if err != nil {
		return err
	}
	if f.Outcome != Pending {
		return nil
	}
	sc, err := s.Store.Schedule(ctx, scheduleID)
	if err != nil {
		return err
	}
	started, err := s.fire(ctx, sc, f)
	// Once the run exists only the bookkeeping is left: a retry finds the
	// confirmed quote and records it, and the run reports itself.
	if err == nil || started || (attempt < maxAttempts && !permanent(err)) {
		return err
	}
	return s.fail(ctx, sc, f, err, attempt)
}

// fire quotes and confirms one time's run, or records (and posts) why it
// was skipped. started reports that the run exists, whatever error follows.
func (s *Service) fire(ctx context.Context, sc Schedule, f Fire) (started bool, err error) {
	skip := func(o Outcome, note string) error {
		f.Outcome, f.Note = o, note
		s.notify(ctx, sc, f.At, "was skipped: "+note)
		return s.Store.SetFire(ctx, f)
	}
	if sc.Status != Active {
		return false, skip(SkippedPaused, "the schedule is "+string(sc.Status))
	}
	if sc.LastRunID != "" {
		if prev, err := s.Engine.Store.Run(ctx, sc.LastRunID); err == nil && !prev.State.Terminal() {
			return false, skip(SkippedOverlap, "the previous run "+prev.ID+" is still "+string(prev.State))
		}
	}
	qid := fireQuoteID(sc.ID, f.At)
	q, err := s.Engine.Store.Quote(ctx, qid)
	if errors.Is(err, research.ErrNotFound) {
		req := sc.Request
		req.ScheduleID = sc.ID // its messages and receipt say a schedule made it
		q, err = s.Engine.QuoteWithID(ctx, req, qid)
		if errors.Is(err, research.ErrBadRequest) {
			return false, skip(FailedOutcome, "it could not be quoted: "+strings.TrimPrefix(err.Error(), "bad request: "))
		}
	}
	if err != nil {
		return false, fmt.Errorf("quote: %w", err)
	}
	var run research.Run
	switch {
	case q.Status == research.QuoteConfirmed:
		if run, err = s.Engine.Store.Run(ctx, q.RunID); err != nil {
			return true, err
		}
	case q.Status != research.QuoteOpen:
		// An earlier attempt's confirm closed it (expired, or its route changed).
		return false, fmt.Errorf("%w: the fire's quote is %s", research.ErrQuoteExpired, q.Status)
	case sc.Cap > 0 && q.Hold > sc.Cap:
		return false, skip(SkippedCap, fmt.Sprintf("its quote holds up to %s, above the cap of %s", q.Hold, sc.Cap))
	case q.OverLimit != "":
		s.tellOwner(ctx, sc, f, q.OverLimit+"; raise it with /limit to keep it running.")
		return false, skip(SkippedLimit, limitNote)
	case q.Debt > 0:
		s.tellOwner(ctx, sc, f, fmt.Sprintf("your account owes %s after a refund; top up to pay it and keep the schedule running.", q.Debt))
		return false, skip(SkippedBalance, debtNote)
	case !q.CanConfirm():
		if s.NotifyOwner != nil {
			when := f.At.In(loadZone(sc.Zone)).Format("Mon 2006-01-02 15:04 MST")
			s.NotifyOwner(ctx, sc.Owner, fmt.Sprintf("Scheduled %s (%s) at %s was skipped: your %s has %s and the run needs up to %s; top up to keep it running.",
				describe(sc), sc.ID, when, q.Bucket, q.Available, q.Hold))
		}
		return false, skip(SkippedBalance, "too little balance (the owner was told the figures privately); top up to keep it running")
	default:
		run, _, err = s.Engine.Confirm(ctx, q.ID, sc.Owner, nil)
		if errors.Is(err, research.ErrInsufficient) {
			return false, skip(SkippedBalance, "the balance no longer covers the quote")
		}
		var le *billing.LimitError
		if errors.As(err, &le) {
			s.tellOwner(ctx, sc, f, fmt.Sprintf("it would pass your %s spend limit of %s (%s spent); raise it with /limit to keep it running.", le.Period, le.Limit, le.Spent))
			return false, skip(SkippedLimit, limitNote)
		}
		if errors.Is(err, billing.ErrInDebt) {
			s.tellOwner(ctx, sc, f, "your account owes money after a refund; top up to pay it and keep the schedule running.")
			return false, skip(SkippedBalance, debtNote)
		}
		if errors.Is(err, research.ErrQuoteUsed) && run.ID != "" {
			err = nil // another attempt of this job confirmed it first
		}
		if err != nil {
			return false, fmt.Errorf("confirm: %w", err)
		}
	}
	f.Outcome, f.RunID = Started, run.ID
	if err := s.Store.SetFire(ctx, f); err != nil {
		return true, err
	}
	_, err = s.Store.UpdateSchedule(ctx, sc.ID, func(sc *Schedule) error {
		sc.LastRunID, sc.LastFire = run.ID, f.At
		return nil
	})
	return true, err
}

// The chat of a schedule skipped for its owner's limit or debt reads these,
// without figures: what was spent and what is owed go to the owner alone.
const (
	limitNote = "it would pass the owner's spend limit (the owner was told the figures privately); raise it with /limit to keep it running"
	debtNote  = "the owner's account owes money after a refund (the owner was told privately); a top-up pays it and keeps the schedule running"
)

// tellOwner tells a schedule's owner privately why a fire was skipped.
func (s *Service) tellOwner(ctx context.Context, sc Schedule, f Fire, why string) {
	if s.NotifyOwner == nil {
		return
	}
	when := f.At.In(loadZone(sc.Zone)).Format("Mon 2006-01-02 15:04 MST")
	s.NotifyOwner(ctx, sc.Owner, fmt.Sprintf("Scheduled %s (%s) at %s was skipped: %s", describe(sc), sc.ID, when, why))
}

// fail records a fire that will not be retried as failed, and tells the
// schedule's chat why; the cause itself goes to the log under a reference.
// It runs after the job's context may have ended (a timeout), so it does
// not use it.
func (s *Service) fail(ctx context.Context, sc Schedule, f Fire, cause error, attempt int) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ref := newRef()
	s.log().Error("schedule fire failed", "schedule_id", sc.ID, "fire_at", f.At, "attempt", attempt, "ref", ref, "err", cause)
	f.Outcome, f.Note = FailedOutcome, failReason(cause)+" (ref "+ref+")"
	if err := s.Store.SetFire(ctx, f); err != nil {
		return fmt.Errorf("record failed fire: %w (it failed with: %v)", err, cause)
	}
	text := "failed: " + f.Note + ". Nothing was charged for it."
	if sc.Status == Active && !sc.NextRunAt.IsZero() {
		text += " The schedule goes on; next run " + sc.NextRunAt.In(loadZone(sc.Zone)).Format("Mon 2006-01-02 15:04 MST") + "."
	}
	s.notify(ctx, sc, f.At, text)
	return nil
}

// notify posts "Scheduled X (ID) at TIME <what>" to the schedule's chat.
func (s *Service) notify(ctx context.Context, sc Schedule, at time.Time, what string) {
	if s.Notify == nil {
		return
	}
	when := at.In(loadZone(sc.Zone)).Format("Mon 2006-01-02 15:04 MST")
	s.Notify(ctx, sc.Request.Dest, fmt.Sprintf("Scheduled %s (%s) at %s %s", describe(sc), sc.ID, when, what))
}

// permanent reports whether retrying a fire cannot help.
func permanent(err error) bool {
	for _, e := range []error{research.ErrBadRequest, research.ErrNoRoute, research.ErrForbidden, research.ErrQuoteExpired,
		research.ErrQuoteChanged, research.ErrQuoteUsed, research.ErrWrongState} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// failReason says in a user's words why a fire failed; internal errors are
// not shown (the log has them under the notice's reference).
func failReason(err error) string {
	switch {
	case errors.Is(err, research.ErrDataUnavailable):
		// The failure's class names the symbol; the provider's own text
		// stays in the log, under the notice's reference.
		var pe *research.PublicError
		if errors.As(err, &pe) {
			return pe.Class
		}
		return "market data was not available"
	case errors.Is(err, market.ErrUnavailable), errors.Is(err, market.ErrRateLimited),
		errors.Is(err, market.ErrNoData), errors.Is(err, market.ErrMalformed):
		return "market data was not available"
	case errors.Is(err, research.ErrQuoteExpired):
		return "its quote expired before the run could start"
	case errors.Is(err, research.ErrQuoteChanged), errors.Is(err, research.ErrNoRoute):
		return "the model's route changed or is disabled"
	case errors.Is(err, research.ErrForbidden):
		return "the schedule's owner may no longer spend from this account"
	case errors.Is(err, context.DeadlineExceeded):
		return "it took too long"
	default:
		return "something went wrong"
	}
}

func newRef() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func loadZone(name string) *time.Location {
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return time.UTC
}

// describe says what a schedule runs.
func describe(sc Schedule) string {
	switch {
	case sc.Request.Kind == research.KindAsk:
		q := []rune(sc.Request.Question)
		if len(q) > 60 {
			q = append(q[:60], '…')
		}
		return "ask: " + string(q)
	case sc.Request.Depth == research.Agent && sc.Request.Kind == research.KindScan:
		return "agent scan of " + sc.Request.Watchlist
	case sc.Request.Kind == research.KindScan:
		return "scan of " + sc.Request.Watchlist
	}
	return "research on " + strings.Join(sc.Request.Symbols, ", ")
}

// Describe is describe for views.
func Describe(sc Schedule) string { return describe(sc) }

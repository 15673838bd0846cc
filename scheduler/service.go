package scheduler

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Service makes, lists and fires schedules.
type Service struct {
	Store  Store
	Engine *research.Engine
	// Notify posts a notice to a schedule's chat (a skipped run, say).
	Notify        func(ctx context.Context, d research.Destination, text string)
	Now           func() time.Time
	MinInterval   time.Duration // default 1 h
	MaxPerAccount int           // default 10
	CatchUp       time.Duration // a time missed by less than this still runs; default 1 h
	Log           *slog.Logger
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
	req := research.Request{Kind: cmd.Kind, Symbols: cmd.Symbols, Watchlist: cmd.List, Depth: cmd.Depth, Owner: owner, Dest: dest}
	q, err := s.Engine.Quote(ctx, req)
	if err != nil {
		return p, err
	}
	if n, err := s.countLive(ctx, q.AccountID); err != nil {
		return p, err
	} else if n >= s.maxPerAccount() {
		return p, fmt.Errorf("%w: you have %d schedules, the most an account may have", ErrBadSpec, n)
	}
	p.Quote, p.Next = q, spec.NextN(now, 5)
	month := spec.NextN(now, 400)
	for _, t := range month {
		if t.Sub(now) <= 30*24*time.Hour {
			p.PerMonth++
		}
	}
	p.MonthLow, p.MonthHigh = q.CostLow*billing.Money(p.PerMonth), q.CostHigh*billing.Money(p.PerMonth)
	p.Schedule = Schedule{ID: newScheduleID(), AccountID: q.AccountID, Owner: owner, Status: Proposed, Spec: cmd.Spec,
		Zone: spec.Zone.String(), Request: req, Cap: cmd.Cap, CreatedAt: now, CostLow: q.CostLow, CostHigh: q.CostHigh, Bucket: q.Bucket}
	// The quote itself is a preview: it is not confirmed as a run.
	if _, err := s.Engine.Decline(ctx, q.ID, owner); err != nil {
		return p, err
	}
	return p, s.Store.SaveSchedule(ctx, p.Schedule)
}

func (s *Service) countLive(ctx context.Context, acc billing.AccountID) (int, error) {
	all, err := s.Store.SchedulesOf(ctx, acc)
	n := 0
	for _, sc := range all {
		if sc.Status == Active || sc.Status == Paused {
			n++
		}
	}
	return n, err
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
	if n, err := s.countLive(ctx, sc.AccountID); err != nil {
		return sc, err
	} else if n >= s.maxPerAccount() {
		return sc, fmt.Errorf("%w: you have %d schedules, the most an account may have", ErrBadSpec, n)
	}
	return s.Store.UpdateSchedule(ctx, id, func(sc *Schedule) error {
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
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := s.Claim(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("claim schedules", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fireQuoteID derives the quote id of one fire, so a retried fire job finds
// the quote (and its run) instead of making a second.
func fireQuoteID(scheduleID string, at time.Time) string {
	h := sha256.Sum256([]byte(scheduleID + "|" + at.UTC().Format(time.RFC3339)))
	return "q" + base64.RawURLEncoding.EncodeToString(h[:])[:16]
}

// Fire runs one claimed fire time: it is the queue's job for it. The
// outcome is recorded; skips are posted to the schedule's chat.
func (s *Service) Fire(ctx context.Context, scheduleID string, at time.Time) error {
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
	when := at.In(loadZone(sc.Zone)).Format("Mon 2006-01-02 15:04 MST")
	skip := func(o Outcome, note string) error {
		f.Outcome, f.Note = o, note
		if s.Notify != nil {
			s.Notify(ctx, sc.Request.Dest, fmt.Sprintf("Scheduled %s (%s) at %s was skipped: %s", describe(sc), sc.ID, when, note))
		}
		return s.Store.SetFire(ctx, f)
	}
	if sc.Status != Active {
		return skip(SkippedPaused, "the schedule is "+string(sc.Status))
	}
	if sc.LastRunID != "" {
		if prev, err := s.Engine.Store.Run(ctx, sc.LastRunID); err == nil && !prev.State.Terminal() {
			return skip(SkippedOverlap, "the previous run "+prev.ID+" is still "+string(prev.State))
		}
	}
	qid := fireQuoteID(sc.ID, at)
	q, err := s.Engine.Store.Quote(ctx, qid)
	if errors.Is(err, research.ErrNotFound) {
		q, err = s.Engine.QuoteWithID(ctx, sc.Request, qid)
		if errors.Is(err, research.ErrBadRequest) {
			return skip(FailedOutcome, "it could not be quoted: "+strings.TrimPrefix(err.Error(), "bad request: "))
		}
	}
	if err != nil {
		return err
	}
	var run research.Run
	switch {
	case q.Status == research.QuoteConfirmed:
		run, err = s.Engine.Store.Run(ctx, q.RunID)
	case sc.Cap > 0 && q.Hold > sc.Cap:
		return skip(SkippedCap, fmt.Sprintf("its quote holds up to %s, above the cap of %s", q.Hold, sc.Cap))
	case !q.CanConfirm():
		return skip(SkippedBalance, fmt.Sprintf("your %s has %s and the run needs up to %s; top up to keep it running", q.Bucket, q.Available, q.Hold))
	default:
		run, _, err = s.Engine.Confirm(ctx, q.ID, sc.Owner, nil)
		if errors.Is(err, research.ErrInsufficient) {
			return skip(SkippedBalance, "the balance no longer covers the quote")
		}
	}
	if err != nil {
		return err
	}
	f.Outcome, f.RunID = Started, run.ID
	if err := s.Store.SetFire(ctx, f); err != nil {
		return err
	}
	_, err = s.Store.UpdateSchedule(ctx, sc.ID, func(sc *Schedule) error {
		sc.LastRunID, sc.LastFire = run.ID, at
		return nil
	})
	return err
}

func loadZone(name string) *time.Location {
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return time.UTC
}

// describe says what a schedule runs.
func describe(sc Schedule) string {
	if sc.Request.Kind == research.KindScan {
		return "scan of " + sc.Request.Watchlist
	}
	return "research on " + strings.Join(sc.Request.Symbols, ", ")
}

// Describe is describe for views.
func Describe(sc Schedule) string { return describe(sc) }

package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// testRunStages: a run executing under a lease advances stage by stage, each
// stage's text in a row of its own and its progress apart from the run's
// body. AdvanceRun applies only on the version the writer knows and under
// its lease (else ErrStale, nothing written); what it wrote survives an
// UpdateRun and reaches every reader (Run, RunsOf, StaleRuns); the settle
// prices what was advanced and names its capture entry and the bucket's
// balance after it.
func testRunStages(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "cli:stages", billing.BucketCredit, billing.Micro)
	q := research.Quote{ID: "q-stages", AccountID: acc, Status: research.QuoteOpen, CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(time.Hour)}
	if err := b.store.SaveQuote(b.ctx, q); err != nil {
		t.Fatal(err)
	}
	stages := []research.Stage{{Name: "fetch", Kind: research.StageFetch}, {Name: "a", Kind: research.StageLLM}, {Name: "b", Kind: research.StageLLM}}
	run := research.Run{ID: "r-stages", QuoteID: q.ID, AccountID: acc, Bucket: billing.BucketCredit, Stages: stages, RouteID: "api",
		Price: billing.Price{InputPerM: billing.Micro, OutputPerM: billing.Micro}, Outputs: map[int]string{}}
	run, err := b.store.ConfirmQuote(b.ctx, q.ID, run, []billing.HoldRequest{{AccountID: acc, Bucket: billing.BucketCredit,
		Amount: 5000, TTL: time.Hour, Key: "run:r-stages:hold", Reference: "run:r-stages", Actor: "test"}}, time.Minute)
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if err := b.store.ClaimRun(b.ctx, run.ID, "me", b.clock.Now(), b.clock.Now().Add(time.Minute)); err != nil {
		t.Fatalf("claim: %v", err)
	}
	mine := research.WithLease(b.ctx, "me")
	run, err = b.store.UpdateRun(mine, run.ID, "worker", "started", func(r *research.Run) error {
		r.State = research.Running
		return nil
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	v := run.Version
	p := run.Progress()
	p.Done, p.TokensIn, p.TokensOut, p.ByRoute = 2, 1000, 500, map[string]research.Tokens{"api": {In: 1000, Out: 500}}
	if err := b.store.AdvanceRun(mine, run.ID, v, p, 1, "stage a's text"); err != nil {
		t.Fatalf("advance: %v", err)
	}
	got, err := b.store.Run(b.ctx, run.ID)
	if err != nil || got.Version != v+1 || got.Done != 2 || got.TokensIn != 1000 || got.Outputs[1] != "stage a's text" || got.State != research.Running {
		t.Fatalf("after advance: %+v, %v", got, err)
	}
	// Refused without writing: an old version, no lease, another's lease.
	p2 := p
	p2.Done, p2.TokensOut = 3, 9e9
	for name, tc := range map[string]struct {
		ctxOwner string
		version  int64
	}{"stale version": {"me", v}, "no lease": {"", v + 1}, "another's lease": {"other", v + 1}} {
		ctx := b.ctx
		if tc.ctxOwner != "" {
			ctx = research.WithLease(b.ctx, tc.ctxOwner)
		}
		if err := b.store.AdvanceRun(ctx, run.ID, tc.version, p2, 2, "must not be kept"); !errors.Is(err, research.ErrStale) {
			t.Fatalf("%s: advance = %v, want ErrStale", name, err)
		}
	}
	// Another writer (a cancel request, say) moves the version; what the
	// stages wrote survives it.
	got, err = b.store.UpdateRun(b.ctx, run.ID, "alice", "redirect", func(r *research.Run) error {
		r.Request.Dest.MessageID = "m2"
		return nil
	})
	if err != nil || got.Version != v+2 || got.TokensOut != 500 || got.Outputs[1] != "stage a's text" || got.Outputs[2] != "" {
		t.Fatalf("after another write: %+v, %v", got, err)
	}
	if err := b.store.AdvanceRun(mine, run.ID, v+1, p2, 2, "must not be kept"); !errors.Is(err, research.ErrStale) {
		t.Fatalf("advance on the version before the other write = %v, want ErrStale", err)
	}
	p3 := got.Progress()
	p3.Done, p3.TokensOut, p3.ByRoute = 3, 1000, map[string]research.Tokens{"api": {In: 1000, Out: 1000}}
	if err := b.store.AdvanceRun(mine, run.ID, v+2, p3, 2, "stage b's text"); err != nil {
		t.Fatalf("advance on the current version: %v", err)
	}
	// The lists see the same run.
	b.clock.Advance(time.Minute)
	for name, list := range map[string]func() ([]research.Run, error){
		"RunsOf": func() ([]research.Run, error) { return b.store.RunsOf(b.ctx, acc, 10) },
		"StaleRuns": func() ([]research.Run, error) {
			return b.store.StaleRuns(b.ctx, []research.State{research.Running}, b.clock.Now(), 10)
		},
	} {
		rs, err := list()
		if err != nil || len(rs) != 1 || rs[0].Outputs[1] != "stage a's text" || rs[0].Outputs[2] != "stage b's text" || rs[0].Done != 3 || rs[0].Version != v+3 {
			t.Fatalf("%s = %+v, %v", name, rs, err)
		}
	}
	// The settle prices the stored usage: 1000 in + 1000 out at $1/M each.
	var priced billing.Money
	settled, err := b.store.SettleRun(mine, run.ID, "worker", "done", func(r *research.Run) (billing.Money, billing.Money) {
		priced = r.Cost()
		return priced, 0
	}, func(r *research.Run, rc *billing.Receipt) error {
		r.State = research.Succeeded
		return nil
	})
	if err != nil || priced != 2000 || settled.Captured != 2000 || settled.Outputs[2] != "stage b's text" {
		t.Fatalf("settle: priced %s, %+v, %v", priced, settled, err)
	}
	entries, err := b.store.Entries(b.ctx, acc, 10)
	if err != nil {
		t.Fatal(err)
	}
	var capture int64
	for _, e := range entries {
		if e.Kind == billing.KindCapture && e.HoldID == run.HoldID {
			capture = e.ID
		}
	}
	if capture == 0 || settled.CaptureEntryID != capture {
		t.Fatalf("capture entry on the run = %d, in the ledger %d", settled.CaptureEntryID, capture)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); settled.AvailableAfter != bal.Available || bal.Available != billing.Micro-2000 {
		t.Fatalf("available after the settle: run says %s, balance %+v", settled.AvailableAfter, bal)
	}
	if err := b.store.AdvanceRun(mine, run.ID, settled.Version, p3, 2, "late"); !errors.Is(err, research.ErrStale) {
		t.Fatalf("advance of an ended run = %v, want ErrStale", err)
	}
	if got, err := b.store.Run(b.ctx, run.ID); err != nil || got.Outputs[2] != "stage b's text" || got.State != research.Succeeded {
		t.Fatalf("ended run: %+v, %v", got, err)
	}
	b.mustCheck(t)
}

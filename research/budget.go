package research

import (
	"fmt"
	"maps"
	"sync"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
)

// ErrNoRoom is why a model call was not made: its worst case (the counted
// prompt at the input price plus the output limit at the output price), on
// top of what the run already used, does not fit in the hold that pays for
// its route.
var ErrNoRoom = fmt.Errorf("the call's worst case does not fit in what is left of the hold")

// runBudget reserves every model attempt of a run against the hold that
// pays for its route: the main hold for the run's bucket, the fallback hold
// for an other-bucket route. It counts what the provider side used, charged
// or not (a failed stream was still generated), so the provider's cost can
// pass the hold by at most the chunk that crossed an output limit.
//
// A reservation is written ahead: before each attempt the run's stored
// Exposure becomes what was used plus that attempt's worst case, so a run
// resumed after its process died counts the attempt in flight as fully
// spent and can still never pass its hold.
type runBudget struct {
	run     Run // prices, buckets and holds; read only
	persist func(exposure map[string]Tokens) error

	mu   sync.Mutex
	used map[string]Tokens // by route: the run's Exposure, plus attempts made here
}

func newRunBudget(r Run, persist func(map[string]Tokens) error) *runBudget {
	used := maps.Clone(r.Exposure)
	if used == nil {
		used = map[string]Tokens{}
	}
	// Charged usage is part of what was used, whatever the stored exposure
	// says (a run from before exposure was kept has none).
	for id, t := range r.ByRoute {
		u := used[id]
		used[id] = Tokens{In: max(u.In, t.In), Out: max(u.Out, t.Out)}
	}
	return &runBudget{run: r, used: used, persist: persist}
}

var _ llm.Budget = (*runBudget)(nil)

// holdFor is the hold paying bucket b's routes (with the extensions its
// owner consented to); 0 when no hold pays them.
func (b *runBudget) holdFor(bucket billing.Bucket) billing.Money {
	switch {
	case bucket == b.run.Bucket:
		return b.run.Cap()
	case bucket == b.run.FallbackBucket && b.run.FallbackHoldID != 0:
		return b.run.FallbackHold
	}
	return 0
}

// Reserve implements llm.Budget.
func (b *runBudget) Reserve(route llm.Route, prompt, maxOut int64) error {
	return b.reserve(route, prompt, maxOut, 0)
}

// reserve is Reserve keeping keep of the run's own bucket untouched: an
// agent's wrap-up reserve, which only its final answer may spend.
func (b *runBudget) reserve(route llm.Route, prompt, maxOut int64, keep billing.Money) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.run.priceOf(route.ID); p.InputPerM <= 0 && p.OutputPerM <= 0 {
		return nil // a free route costs nothing, whatever it streams
	}
	bucket := b.run.bucketOf(route.ID)
	hold := b.holdFor(bucket)
	trial := maps.Clone(b.used)
	t := trial[route.ID]
	t.In, t.Out = t.In+max(prompt, 0), t.Out+max(maxOut, 0)
	trial[route.ID] = t
	need, err := costOf(b.run, trial, bucket)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoRoom, err)
	}
	if bucket != b.run.Bucket {
		keep = 0 // the wrap-up reserve is kept in the run's own bucket
	}
	if need > hold-keep {
		used, _ := costOf(b.run, b.used, bucket)
		if keep > 0 {
			return fmt.Errorf("%w: %d prompt + %d output tokens on %s need up to %s more; %s of the %s hold is used and %s is kept for the answer",
				ErrNoRoom, prompt, maxOut, route.ID, need-used, used, hold, keep)
		}
		return fmt.Errorf("%w: %d prompt + %d output tokens on %s need up to %s more; %s of the %s hold is used",
			ErrNoRoom, prompt, maxOut, route.ID, need-used, used, hold)
	}
	if b.persist != nil {
		if err := b.persist(trial); err != nil {
			return fmt.Errorf("reserve: %w", err)
		}
	}
	return nil
}

// Spent implements llm.Budget.
func (b *runBudget) Spent(route llm.Route, u llm.Usage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.used[route.ID]
	t.In, t.Out = t.In+max(u.PromptTokens, 0), t.Out+max(u.CompletionTokens, 0)
	b.used[route.ID] = t
}

// usedIn is what the run used so far in bucket b, as the reservations count it.
func (b *runBudget) usedIn(bucket billing.Bucket) billing.Money {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, err := costOf(b.run, b.used, bucket)
	if err != nil {
		return billing.MaxMoney
	}
	return m
}

// keeping is a Budget over b that keeps keep of the run's bucket for later.
type keeping struct {
	b    *runBudget
	keep billing.Money
}

func (k keeping) Reserve(route llm.Route, prompt, maxOut int64) error {
	return k.b.reserve(route, prompt, maxOut, k.keep)
}

func (k keeping) Spent(route llm.Route, u llm.Usage) { k.b.Spent(route, u) }

// exposure returns what was used so far, by route.
func (b *runBudget) exposure() map[string]Tokens {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.used)
}

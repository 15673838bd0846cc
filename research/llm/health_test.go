package llm_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research/llm"
)

// clock is a settable time source safe for concurrent reads.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestHealthStats(t *testing.T) {
	t.Parallel()
	h := llm.NewHealth(llm.HealthOptions{FailuresToCool: 100, Now: newClock().Now})
	ms := time.Millisecond
	h.Record("r", true, 300*ms, 30, 300*ms+time.Second)
	h.Record("r", true, 100*ms, 10, 100*ms+time.Second)
	h.Record("r", false, 0, 0, 50*ms)
	h.Record("r", true, 200*ms, 20, 200*ms+time.Second)

	st := h.Stats("r")
	if st.Samples != 4 || st.Successes != 3 || st.SuccessRate != 0.75 || st.ConsecutiveFailures != 0 {
		t.Errorf("counts = %+v, want 4 samples, 3 successes, rate 0.75, 0 consecutive failures", st)
	}
	if st.P50FirstToken != 200*ms {
		t.Errorf("P50FirstToken = %v, want 200ms", st.P50FirstToken)
	}
	// 60 tokens over 3s of generation (time after the first token).
	if st.TokensPerSecond != 20 {
		t.Errorf("TokensPerSecond = %v, want 20", st.TokensPerSecond)
	}
	if !st.CoolingUntil.IsZero() {
		t.Errorf("CoolingUntil = %v, want zero", st.CoolingUntil)
	}
	if got := h.Stats("never-seen"); got != (llm.RouteStats{}) || !h.Available("never-seen") {
		t.Errorf("an unknown route: stats %+v, available %t; want zero and available", got, h.Available("never-seen"))
	}
	if all := h.All(); len(all) != 1 || all["r"] != st {
		t.Errorf("All() = %v, want just r", all)
	}
}

func TestHealthWindowKeepsLastN(t *testing.T) {
	t.Parallel()
	h := llm.NewHealth(llm.HealthOptions{Window: 3, FailuresToCool: 100, MinSuccessRate: -1, Now: newClock().Now})
	h.Record("r", false, 0, 0, time.Second)
	h.Record("r", false, 0, 0, time.Second)
	for range 3 {
		h.Record("r", true, time.Second, 10, 2*time.Second)
	}
	if st := h.Stats("r"); st.Samples != 3 || st.SuccessRate != 1 {
		t.Errorf("stats = %+v, want the 3 latest samples, all successes", st)
	}
	h.Record("r", false, 0, 0, time.Second)
	if st := h.Stats("r"); st.Samples != 3 || st.Successes != 2 || st.ConsecutiveFailures != 1 {
		t.Errorf("stats = %+v, want 3 samples, 2 successes, 1 consecutive failure", st)
	}
}

func TestHealthCooldownAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	clk := newClock()
	h := llm.NewHealth(llm.HealthOptions{FailuresToCool: 2, Cooldown: 30 * time.Second, MinSuccessRate: -1, Now: clk.Now})

	h.Record("r", false, 0, 0, time.Second)
	if !h.Available("r") {
		t.Fatal("one failure cooled the route; want two")
	}
	h.Record("r", false, 0, 0, time.Second)
	if h.Available("r") {
		t.Fatal("two failures in a row did not cool the route")
	}
	want := clk.Now().Add(30 * time.Second)
	if st := h.Stats("r"); !st.CoolingUntil.Equal(want) {
		t.Errorf("CoolingUntil = %v, want %v", st.CoolingUntil, want)
	}
	clk.Advance(29 * time.Second)
	if h.Available("r") {
		t.Error("available 1s before its cooldown ends")
	}
	clk.Advance(time.Second)
	if !h.Available("r") || !h.Stats("r").CoolingUntil.IsZero() {
		t.Fatal("still cooling when the cooldown ended")
	}

	// Probation: the first failure after a cooldown cools it again at once.
	h.Record("r", false, 0, 0, time.Second)
	if h.Available("r") {
		t.Fatal("a failure on probation did not cool the route again")
	}
	clk.Advance(30 * time.Second)
	h.Record("r", true, time.Second, 5, 2*time.Second) // a success ends probation
	h.Record("r", false, 0, 0, time.Second)
	if !h.Available("r") {
		t.Error("one failure after a success cooled the route; probation should have ended")
	}
}

func TestHealthCooldownOnLowSuccessRate(t *testing.T) {
	t.Parallel()
	h := llm.NewHealth(llm.HealthOptions{FailuresToCool: 100, MinSamples: 4, MinSuccessRate: 0.5, Now: newClock().Now})
	for _, ok := range []bool{true, false, true, false} {
		h.Record("r", ok, time.Second, 1, 2*time.Second)
	}
	if !h.Available("r") {
		t.Fatal("cooled at a success rate of exactly 0.5; the threshold is 'below'")
	}
	h.Record("r", false, 0, 0, time.Second) // 2 of 5
	if h.Available("r") {
		t.Error("a success rate of 0.4 did not cool the route")
	}
}

func TestHealthConcurrentUse(t *testing.T) {
	t.Parallel()
	h := llm.NewHealth(llm.HealthOptions{Window: 1000, FailuresToCool: 1000, MinSuccessRate: -1, Now: newClock().Now})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				h.Record("r", (g+i)%2 == 0, time.Millisecond, 1, 2*time.Millisecond)
				h.Available("r")
				h.Stats("r")
			}
		})
	}
	wg.Wait()
	if st := h.Stats("r"); st.Samples != 800 || st.Successes != 400 {
		t.Errorf("stats = %+v, want 800 samples, 400 successes", st)
	}
}

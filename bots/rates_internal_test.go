package bots

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// memRates is a RateStore in memory for the outbox's tests (the stores'
// own implementation is checked by store/storetest): buckets only.
type memRates struct {
	mu   sync.Mutex
	tats map[string]time.Time
}

func (m *memRates) TakeRate(_ context.Context, now time.Time, rules []RateRule) (time.Duration, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tats == nil {
		m.tats = map[string]time.Time{}
	}
	var wait time.Duration
	for _, r := range rules {
		wait = max(wait, BucketWait(m.tats[r.Key], now, r.Every, r.Burst, r.Need))
	}
	if wait > 0 {
		return wait, false, nil
	}
	for _, r := range rules {
		m.tats[r.Key] = BucketTake(m.tats[r.Key], now, r.Every)
	}
	return 0, true, nil
}

func (m *memRates) PruneRates(context.Context, time.Time) (int64, error) { return 0, nil }

// TestSharedOutboxBudget: two outboxes (two instances) sharing their
// budgets send to one channel together as one would: the second send of
// the second to the channel at once waits for the channel's interval, and
// so does the first instance after it; another channel is not held back. A
// platform not registered Shared keeps its budget per instance.
func TestSharedOutboxBudget(t *testing.T) {
	t.Parallel()
	rates := &memRates{}
	now := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	lim := Limits{PerChat: rate.Every(time.Second), PerChatBurst: 1, Global: 40, GlobalBurst: 10, Shared: true}
	a, b := NewOutbox(nil), NewOutbox(nil)
	for _, o := range []*Outbox{a, b} {
		o.Rates = rates
		o.Register("discord", nil, lim)
		o.Register("own", nil, Limits{PerChat: rate.Every(time.Second), PerChatBurst: 1})
	}
	wait := func(o *Outbox, platform, chat string, at time.Time) time.Duration {
		o.mu.Lock()
		p := o.platforms[platform]
		o.mu.Unlock()
		return o.sharedWait(t.Context(), msgKey{platform, chat, "m"}, p, at)
	}
	if w := wait(a, "discord", "c1", now); w != 0 {
		t.Fatalf("the first send to a channel waits %s", w)
	}
	if w := wait(b, "discord", "c1", now); w != time.Second {
		t.Fatalf("another instance's send to the channel at once waits %s, want the channel's 1 s", w)
	}
	if w := wait(a, "discord", "c2", now); w != 0 {
		t.Fatalf("another channel waits %s", w)
	}
	if w := wait(b, "discord", "c1", now.Add(time.Second)); w != 0 {
		t.Fatalf("a second later the channel still waits %s", w)
	}
	if w := wait(a, "discord", "c1", now.Add(time.Second)); w != time.Second {
		t.Fatalf("the first instance right after the second: waits %s, want 1 s", w)
	}
	if w := wait(b, "own", "c1", now); w != 0 || wait(a, "own", "c1", now) != 0 {
		t.Fatal("a platform without Shared took from the shared budget")
	}
}

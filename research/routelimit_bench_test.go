package research_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// provider is the fake API as a provider enforcing its real limits: at most
// concurrent requests at once, or at most perSlice requests in any slice
// (a per-minute limit enforced over shorter periods, as providers may).
// A request beyond them is answered 429 with Retry-After: 1 and not counted.
type provider struct {
	srv        *llmtest.Server
	concurrent int64
	perSlice   int
	slice      time.Duration

	mu       sync.Mutex
	accepted []time.Time
	tooMany  atomic.Int64
}

func (p *provider) respond(llmtest.Request) (llmtest.Response, bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Active counts this request: it is answered from here on.
	over := p.concurrent > 0 && p.srv.Active() > p.concurrent
	if p.perSlice > 0 {
		n := 0
		for i := len(p.accepted) - 1; i >= 0 && now.Sub(p.accepted[i]) < p.slice; i-- {
			n++
		}
		over = over || n >= p.perSlice
	}
	if over {
		p.tooMany.Add(1)
		return llmtest.Error(429, "rate limit reached").WithRetryAfter("1"), true
	}
	p.accepted = append(p.accepted, now)
	// Ten chunks 5 ms apart: a call of at least 50 ms.
	return llmtest.Stream("a ", "b ", "c ", "d ", "e ", "f ", "g ", "h ", "i ", "j").WithDelay(5 * time.Millisecond), true
}

// BenchmarkRouteLimit429: many quick runs confirmed at once on one API
// route, on two instances sharing PostgreSQL, against the fake API as a
// provider that answers 429 beyond its real limit. The route's configured
// limit is the provider's (the case the catalog is written for), or twice
// it (a wrong catalog entry: the first 429s lower the admitted rate). It
// reports the upstream 429s, the calls per second, and that figure against
// the provider's ceiling: at a concurrency limit, limit / the average call
// (admission to leave, as the gate measured it; at least 50 ms, the fake's
// pacing); at a rate limit, perSlice per slice from the first call to the
// last.
//
// go test -run '^$' -bench BenchmarkRouteLimit429 -benchtime 1x ./research/
func BenchmarkRouteLimit429(b *testing.B) {
	cases := []struct {
		name       string
		runs       int
		provider   *provider
		configured llm.Limits
	}{
		{"concurrent=4/configured=4", 200, &provider{concurrent: 4}, llm.Limits{Concurrent: 4}},
		{"concurrent=4/configured=8", 200, &provider{concurrent: 4}, llm.Limits{Concurrent: 8}},
		{"rpm=120/configured=120", 60, &provider{perSlice: 20, slice: 10 * time.Second}, llm.Limits{RequestsPerMinute: 120}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			bed := testbed.New(b, testbed.Options{Postgres: true, MaxWorkers: 120, RoutesFor: limited(c.configured)})
			_, e2 := bed.InstanceWithWorkers()
			engines := []*research.Engine{bed.Engine, e2}
			p := c.provider
			p.srv = bed.LLM
			bed.LLM.SetResponder(p.respond)
			who := make([]billing.Identity, c.runs)
			for i := range who {
				who[i] = billing.Identity{Platform: "bench", ExternalID: fmt.Sprint(i)}
				bed.Fund(who[i], billing.BucketCredit, 10*billing.Micro)
			}
			for b.Loop() {
				p.tooMany.Store(0)
				p.mu.Lock()
				p.accepted = nil
				p.mu.Unlock()
				qs := make([]research.Quote, c.runs)
				for i := range qs {
					q, err := engines[i%2].Quote(b.Context(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"},
						Depth: research.Quick, Model: "gpt-test", Owner: who[i]})
					if err != nil {
						b.Fatal(err)
					}
					qs[i] = q
				}
				start := time.Now()
				ids := make([]string, c.runs)
				var wg sync.WaitGroup
				for i := range qs {
					wg.Go(func() {
						r, _, err := engines[i%2].Confirm(b.Context(), qs[i].ID, who[i], nil)
						if err != nil {
							b.Error(err)
						}
						ids[i] = r.ID
					})
				}
				wg.Wait()
				if b.Failed() {
					return
				}
				for _, id := range ids {
					if ev := bed.Events.WaitFinal(b, id, 10*time.Minute); ev.Run.State != research.Succeeded {
						b.Fatalf("run %s: %s %s", id, ev.Run.State, ev.Run.Error)
					}
				}
				wall := time.Since(start)
				p.mu.Lock()
				calls := len(p.accepted)
				first, last := p.accepted[0], p.accepted[len(p.accepted)-1]
				p.mu.Unlock()
				if calls != c.runs {
					b.Fatalf("%d calls answered, want one per run (%d)", calls, c.runs)
				}
				rate := float64(calls) / wall.Seconds()
				b.ReportMetric(float64(p.tooMany.Load()), "upstream_429s")
				b.ReportMetric(rate, "calls/s")
				b.ReportMetric(last.Sub(first).Seconds(), "s_first_to_last_call")
				b.ReportMetric(wall.Seconds(), "s_wall")
				if p.concurrent > 0 {
					// The provider's ceiling at its concurrency is limit / the
					// time a call takes here (admission to leave, the gate's
					// average): how much of it the line used.
					line, err := bed.Store.PeekRoute(b.Context(), "api-a", time.Now())
					if err != nil || line.AvgCall <= 0 {
						b.Fatalf("route line: %+v, %v", line, err)
					}
					ceiling := float64(p.concurrent) / line.AvgCall.Seconds()
					b.ReportMetric(line.AvgCall.Seconds()*1000, "ms/call")
					b.ReportMetric(rate/ceiling, "of_ceiling")
				} else {
					// At perSlice per slice, n calls need (n/perSlice - 1) slices
					// from the first to the last.
					ideal := (float64(calls)/float64(p.perSlice) - 1) * p.slice.Seconds()
					b.ReportMetric(ideal/last.Sub(first).Seconds(), "of_ceiling")
				}
			}
			bed.CheckSettled()
		})
	}
}

package research_test

import (
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// TestCatalogCloseStopsBilling: a route says whether closing a stream stops
// its provider's billing; absent, it does.
func TestCatalogCloseStopsBilling(t *testing.T) {
	t.Parallel()
	cat, err := research.ParseCatalog([]byte(`{"routes":[
		{"id":"a","kind":"official","model":"m","base_url":"http://a","input_per_m":"1","output_per_m":"1","enabled":true},
		{"id":"b","kind":"official","model":"m","base_url":"http://b","input_per_m":"1","output_per_m":"1","enabled":true,"close_stops_billing":false},
		{"id":"c","kind":"official","model":"m","base_url":"http://c","input_per_m":"1","output_per_m":"1","enabled":true,"close_stops_billing":true}]}`),
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cat.Route("a").BillsAfterClose || !cat.Route("b").BillsAfterClose || cat.Route("c").BillsAfterClose {
		t.Fatalf("bills after close: a %t, b %t, c %t", cat.Route("a").BillsAfterClose, cat.Route("b").BillsAfterClose, cat.Route("c").BillsAfterClose)
	}
	def, err := research.ParseCatalog(research.DefaultCatalog, func(string) string { return "" })
	if err != nil || def.Route("offline").BillsAfterClose {
		t.Fatalf("the offline route bills after close (%v)", err)
	}
}

// TestCancelSettledAsTheRouteBills: on a route whose provider bills the
// whole response after a disconnect, the quote's cancel line says so, and a
// cancel mid-call is charged the call's prompt and its whole output limit
// (within the hold); on an ordinary route only what was delivered.
func TestCancelSettledAsTheRouteBills(t *testing.T) {
	t.Parallel()
	for _, billsAfter := range []bool{true, false} {
		b := testbed.New(t, testbed.Options{RoutesFor: func(url string) []llm.Route {
			r := soloRoutes(url)
			r[0].BillsAfterClose = billsAfter
			return r
		}})
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		gate := make(chan struct{})
		b.LLM.Enqueue(llmtest.Stream("one ", "two ", "three").WithGate(gate).WithoutUsage())
		q := soloQuote(t, b, research.Quick, "AAPL")
		if got := strings.Contains(q.CancelPolicy, "bills the whole response"); got != billsAfter {
			t.Fatalf("bills after close %t: cancel line %q", billsAfter, q.CancelPolicy)
		}
		run := confirm(t, b, q)
		gate <- struct{}{}
		b.Events.Wait(t, run.ID, wait, func(ev research.Event) bool { return ev.TokensOut > 0 })
		if _, err := b.Engine.Cancel(t.Context(), run.ID, alice); err != nil {
			t.Fatal(err)
		}
		r := b.Events.WaitFinal(t, run.ID, wait).Run
		want := llm.CountTokens("one ")
		if billsAfter {
			want = int64(research.Plans[research.Quick].OutputLimit)
		}
		if r.State != research.Cancelled || r.TokensOut != want || r.Captured != soloPrice.Cost(r.TokensIn, r.TokensOut) || r.Captured > r.Hold {
			t.Fatalf("bills after close %t: %s, %d out (want %d), captured %s of %s", billsAfter, r.State, r.TokensOut, want, r.Captured, r.Hold)
		}
		checkEnd(t, b, r)
	}
}

package discord_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// BenchmarkQuote measures interaction received → quote sent: from the fake
// Discord sending the /research interaction (INTERACTION_CREATE written to
// the gateway, or the signed POST to the endpoint) to the quote arriving as
// its callback, with the real conversation and engine on a SQLite store on
// this machine (SQLite, and PostgreSQL at TEST_DATABASE_URL or the local
// test database). Reported: p50, p99 and max in milliseconds.
//
//	go test -run '^$' -bench BenchmarkQuote -benchtime 300x ./bots/discord/
func BenchmarkQuote(b *testing.B) {
	for _, mode := range []struct {
		name           string
		http, postgres bool
	}{{"gateway-sqlite", false, false}, {"http-sqlite", true, false}, {"gateway-postgres", false, true}} {
		b.Run(mode.name, func(b *testing.B) {
			bd := setup(b, options{http: mode.http, bed: testbed.Options{NoWorkers: true, Postgres: mode.postgres}})
			bd.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)
			symbols := []string{"AAPL", "MSFT", "NVDA", "AMD", "GOOGL", "AAPL MSFT", "NVDA AMD GOOGL"}
			var lat []time.Duration
			b.ResetTimer()
			for i := range b.N {
				in := bd.fake.Command(alice, channel, "research", discordtest.String("symbols", symbols[i%len(symbols)]))
				cb := bd.send(b, in)
				if cb.Type != 4 {
					b.Fatalf("quote answered with type %d", cb.Type)
				}
				lat = append(lat, cb.After)
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50_ms")
			b.ReportMetric(pct(0.99), "p99_ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max_ms")
		})
	}
}

// BenchmarkRunEdits runs research concurrently under a fake that enforces
// Discord-like per-route buckets (5 requests per 5 s per channel on channel
// messages, per token on webhooks) and reports, per run, the edits of its
// progress message and the 429s Discord answered.
//
//	go test -run '^$' -bench BenchmarkRunEdits -benchtime 1x ./bots/discord/
func BenchmarkRunEdits(b *testing.B) {
	oneChannel := []string{"600000000000000011", "600000000000000011", "600000000000000011", "600000000000000011"}
	fourChannels := []string{"600000000000000021", "600000000000000022", "600000000000000023", "600000000000000024"}
	for _, shape := range []struct {
		name     string
		channels []string // one run per entry
		limits   *bots.Limits
	}{
		{"4runs-1channel", oneChannel, nil},
		{"4runs-4channels", fourChannels, nil},
		// Without the outbox's budget, Discord's buckets push back: the
		// 429s come back as retry-afters and the outbox waits them out.
		{"4runs-1channel-unbudgeted", oneChannel, &bots.Limits{}},
	} {
		b.Run(shape.name, func(b *testing.B) {
			buckets := []discordtest.Bucket{
				{Route: discordtest.RouteChannelEdit, Limit: 5, Window: 5 * time.Second},
				{Route: discordtest.RouteChannelMessage, Limit: 5, Window: 5 * time.Second},
				{Route: discordtest.RouteWebhookEdit, Limit: 5, Window: 5 * time.Second},
				{Route: discordtest.RouteFollowup, Limit: 5, Window: 5 * time.Second},
			}
			bd := setup(b, options{bed: testbed.Options{Pace: 20 * time.Millisecond}, buckets: buckets, limits: shape.limits})
			var edits, runs, seconds float64
			b.ResetTimer()
			for range b.N {
				began := time.Now()
				var progress []string
				seen := map[string]bool{}
				for _, m := range bd.fake.Messages() {
					seen[m.ID] = true
				}
				for k, ch := range shape.channels {
					user := discordtest.User{ID: fmt.Sprintf("4100000000000000%02d", k)}
					bd.bed.Fund(identity(user), billing.BucketCredit, billing.Micro)
					where := discordtest.Where{Channel: ch, Guild: guild}
					qin := bd.fake.Command(user, where, "research", discordtest.String("symbols", "AAPL MSFT"), discordtest.String("depth", "standard"))
					bd.send(b, qin)
					quote := bd.original(b, qin)
					bd.send(b, bd.fake.Click(user, guild, quote, button(b, quote, "Confirm")))
					p := bd.message(b, "a new progress message", func(m discordtest.Message) bool {
						return m.Source == "channel" && m.ChannelID == ch && !seen[m.ID]
					})
					seen[p.ID] = true
					progress = append(progress, p.ID)
				}
				for _, id := range progress {
					m := bd.channelMessage(b, id, "the final", func(m discordtest.Message) bool {
						return strings.Contains(title(m), "succeeded")
					})
					edits += float64(m.Edits)
					runs++
				}
				seconds += time.Since(began).Seconds()
			}
			b.StopTimer()
			sent, limited, coalesced, failed := bd.ob.Stats()
			b.ReportMetric(edits/runs, "edits/run")
			b.ReportMetric(float64(bd.fake.Limited()), "429s")
			b.ReportMetric(float64(coalesced)/runs, "coalesced/run")
			b.ReportMetric(float64(limited), "outbox-retry-after")
			b.ReportMetric(float64(failed), "outbox-failed")
			b.ReportMetric(float64(sent)/runs, "outbox-sent/run")
			b.ReportMetric(seconds/float64(b.N), "s/round")
		})
	}
}

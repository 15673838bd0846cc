package research_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

func reportLatency(b *testing.B, ds []time.Duration) {
	b.ReportMetric(float64(percentile(ds, 0.50).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(percentile(ds, 0.99).Microseconds())/1000, "p99_ms")
}

// BenchmarkQuote: a quick quote on two symbols, demo data, the store on this machine.
func BenchmarkQuote(b *testing.B) {
	for _, pg := range []bool{false, true} {
		b.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(b *testing.B) {
			bed := testbed.New(b, testbed.Options{Postgres: pg, NoWorkers: true})
			bed.Fund(alice, billing.BucketCredit, billing.Micro)
			var ds []time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := bed.Engine.Quote(context.Background(), research.Request{Kind: research.KindResearch,
					Symbols: []string{"AAPL", "MSFT"}, Depth: research.Quick, Owner: alice}); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
			}
			reportLatency(b, ds)
		})
	}
}

// BenchmarkConcurrentRuns: 1,000 quick runs confirmed at once on PostgreSQL
// (River, 1,000 workers on one instance), each streaming 500 tokens from the
// fake OpenAI-compatible API, which runs in a child process (the test binary
// re-run) so that this process's memory is the runs'. Every stream writes its
// first chunk and is then held until all 1,000 runs have received one: the
// heap (after a GC) and the goroutine stacks are read then, against the same
// readings (after a GC) with the runs quoted but not confirmed; then the
// streams are released and every run settles. runs/s is confirm to the last
// final event, less the time the streams were held for the reading.
//
// h1 is the fake over plain http (HTTP/1.1, a connection per stream); h2 over
// https with HTTP/2, as providers serve, through the providers' client
// (llm.NewHTTPClient) in both. FORGE_BENCH_PROFILE=DIR writes the heap and
// goroutine profiles of the reading there.
func BenchmarkConcurrentRuns(b *testing.B) {
	for _, proto := range []string{"h1", "h2"} {
		b.Run(proto, func(b *testing.B) { concurrentRuns(b, proto) })
	}
}

func concurrentRuns(b *testing.B, proto string) {
	const runs, tokens = 1000, 500
	if os.Getenv("FORGE_BENCH_PROFILE") != "" {
		runtime.MemProfileRate = 1024
	}
	for b.Loop() {
		b.StopTimer()
		fake := testbed.StartLLMChild(b, proto, tokens)
		bed := testbed.New(b, testbed.Options{Postgres: true, MaxWorkers: runs, RoutesFor: apiRoutes,
			MaxConns: 40, LLMURL: fake.URL, LLMClient: fake.Client, SlimEvents: true})
		var quotes []research.Quote
		for i := range runs {
			who := billing.Identity{Platform: "bench", ExternalID: fmt.Sprint(i % 50)}
			bed.Fund(who, billing.BucketCredit, 10*billing.Micro)
			q, err := bed.Engine.Quote(context.Background(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"},
				Depth: research.Quick, Model: "gpt-test", Owner: who})
			if err != nil {
				b.Fatal(err)
			}
			quotes = append(quotes, q)
		}
		before := readMemory()
		cpu0 := readCPU(fake.Pid())
		b.StartTimer()
		start := time.Now()
		ids := make([]string, runs)
		var wg sync.WaitGroup
		for i, q := range quotes {
			wg.Go(func() {
				r, _, err := bed.Engine.Confirm(context.Background(), q.ID, q.Request.Owner, nil)
				if err != nil {
					b.Error(err)
				}
				ids[i] = r.ID
			})
		}
		wg.Wait()
		confirmed := time.Since(start)
		// Every run has received its stream's first chunk: it is in the
		// middle of its model call.
		for _, id := range ids {
			bed.Events.Wait(b, id, 2*time.Minute, func(ev research.Event) bool { return ev.TokensOut > 0 })
		}
		heldAt := time.Now()
		during := readMemory()
		if dir := os.Getenv("FORGE_BENCH_PROFILE"); dir != "" {
			writeProfiles(b, dir, proto)
		}
		if err := fake.Release(); err != nil {
			b.Fatal(err)
		}
		held := time.Since(heldAt)
		for _, id := range ids {
			if ev := bed.Events.WaitFinal(b, id, 2*time.Minute); ev.Run.State != research.Succeeded {
				b.Fatalf("run %s: %s %s", id, ev.Run.State, ev.Run.Error)
			}
		}
		elapsed := time.Since(start) - held
		cpu := readCPU(fake.Pid()).minus(cpu0)
		b.StopTimer()
		st, err := fake.Stats()
		if err != nil {
			b.Fatal(err)
		}
		if st.Requests != runs || (proto == "h2") != (st.HTTP2 == runs) || st.MaxActive != runs {
			b.Fatalf("the fake saw %+v", st)
		}
		heap := float64(int64(during.heap)-int64(before.heap)) / runs / 1024
		stack := float64(int64(during.stack)-int64(before.stack)) / runs / 1024
		b.ReportMetric(float64(runs)/elapsed.Seconds(), "runs/s")
		b.ReportMetric(confirmed.Seconds(), "confirm_s")
		b.ReportMetric(heap, "heap_KiB/running_run")
		b.ReportMetric(stack, "stack_KiB/running_run")
		b.ReportMetric(heap+stack, "total_KiB/running_run")
		b.ReportMetric(float64(during.goroutines-before.goroutines)/runs, "goroutines/running_run")
		// CPU per run from confirm to settled (the held time and the
		// readings included), by process: this one, the fake, PostgreSQL
		// (every postgres process on the machine: other tests' too).
		b.ReportMetric(cpu.self.Seconds()*1000/runs, "cpu_ms/run")
		b.ReportMetric(cpu.fake.Seconds()*1000/runs, "fake_cpu_ms/run")
		b.ReportMetric(cpu.pg.Seconds()*1000/runs, "pg_cpu_ms/run")
		bed.CheckLedger()
		b.StartTimer()
	}
}

// memory is what readMemory reads: live heap, goroutine stacks, goroutines.
type memory struct {
	heap, stack uint64
	goroutines  int
}

// readMemory collects garbage first, so the heap is what is live.
func readMemory() memory {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memory{heap: m.HeapAlloc, stack: m.StackInuse, goroutines: runtime.NumGoroutine()}
}

// cpuTimes is CPU time used so far by this process, the fake's and
// PostgreSQL's processes.
type cpuTimes struct{ self, fake, pg time.Duration }

func (c cpuTimes) minus(d cpuTimes) cpuTimes {
	return cpuTimes{c.self - d.self, c.fake - d.fake, c.pg - d.pg}
}

// readCPU reads user plus system time from /proc (Linux; zero elsewhere).
func readCPU(fakePid int) cpuTimes {
	var c cpuTimes
	c.self = procCPU("self")
	c.fake = procCPU(fmt.Sprint(fakePid))
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm")); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			c.pg += procCPU(d.Name())
		}
	}
	return c
}

// procCPU is utime+stime of /proc/PID/stat, at the usual 100 ticks a second.
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime (fields 14 and 15)
		n, _ := strconv.ParseInt(s, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// writeProfiles writes the heap and goroutine profiles to dir.
func writeProfiles(b *testing.B, dir, name string) {
	for _, p := range []string{"heap", "goroutine"} {
		f, err := os.Create(filepath.Join(dir, name+"."+p))
		if err != nil {
			b.Fatal(err)
		}
		debug := 0
		if p == "goroutine" {
			debug = 1
		}
		if err := pprof.Lookup(p).WriteTo(f, debug); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkCancelLatency: from Cancel to the settled final event, for a run
// streaming in this instance, and for one streaming on a second instance
// sharing the PostgreSQL database.
func BenchmarkCancelLatency(b *testing.B) {
	for _, tc := range []struct {
		name        string
		pg, crossed bool
	}{{"sqlite_one_instance", false, false}, {"postgres_one_instance", true, false}, {"postgres_across_instances", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			bed := testbed.New(b, testbed.Options{Postgres: tc.pg, NoWorkers: tc.crossed, RoutesFor: apiRoutes})
			engine := bed.Engine
			if tc.crossed {
				_, engine = bed.InstanceWithWorkers()
				_ = engine // the run executes there; the cancel goes through bed.Engine
			}
			bed.Fund(alice, billing.BucketCredit, 100*billing.Micro)
			var ds []time.Duration
			for b.Loop() {
				gate := make(chan struct{}, 1)
				bed.LLM.Enqueue(llmtest.Stream("a ", "b ", "c ", "d ").WithGate(gate))
				q, err := bed.Engine.Quote(context.Background(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"},
					Depth: research.Quick, Model: "gpt-test", Owner: alice})
				if err != nil {
					b.Fatal(err)
				}
				r, _, err := bed.Engine.Confirm(context.Background(), q.ID, alice, nil)
				if err != nil {
					b.Fatal(err)
				}
				gate <- struct{}{}
				bed.Events.Wait(b, r.ID, time.Minute, func(ev research.Event) bool { return ev.TokensOut > 0 })
				start := time.Now()
				if _, err := bed.Engine.Cancel(context.Background(), r.ID, alice); err != nil {
					b.Fatal(err)
				}
				if ev := bed.Events.WaitFinal(b, r.ID, time.Minute); ev.Run.State != research.Cancelled {
					b.Fatalf("state %s", ev.Run.State)
				}
				ds = append(ds, time.Since(start))
			}
			reportLatency(b, ds)
		})
	}
}

// BenchmarkStatements counts, with a pgx tracer, the statements and round
// trips forgebot sends to PostgreSQL per confirm and per run (from the
// confirm's return to the run's job completed), River's own apart. The
// route is the fake API answering at once, so only the store's work shows.
func BenchmarkStatements(b *testing.B) {
	deep := []string{"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AMD", "NFLX", "INTC"}
	for _, tc := range []struct {
		name    string
		depth   research.Depth
		symbols []string
	}{{"quick_1", research.Quick, []string{"AAPL"}}, {"deep_10", research.Deep, deep}} {
		b.Run(tc.name, func(b *testing.B) {
			tr := &testbed.Statements{}
			bed := testbed.New(b, testbed.Options{Postgres: true, RoutesFor: apiRoutes, Tracer: tr})
			bed.LLM.SetDefault(llmtest.Stream("some ", "text ", "here"))
			bed.Fund(alice, billing.BucketCredit, 1000*billing.Micro)
			watch, err := pgx.Connect(context.Background(), bed.Spec())
			if err != nil {
				b.Fatal(err)
			}
			defer watch.Close(context.Background())
			var confirm, run testbed.StatementCounts
			n := 0
			for b.Loop() {
				q, err := bed.Engine.Quote(context.Background(), research.Request{Kind: research.KindResearch, Symbols: tc.symbols,
					Depth: tc.depth, Model: "gpt-test", Owner: alice})
				if err != nil {
					b.Fatal(err)
				}
				tr.Start()
				r, _, err := bed.Engine.Confirm(context.Background(), q.ID, alice, nil)
				if err != nil {
					b.Fatal(err)
				}
				c := tr.Stop()
				tr.Start()
				if ev := bed.Events.WaitFinal(b, r.ID, time.Minute); ev.Run.State != research.Succeeded {
					b.Fatalf("run %s: %s %s", r.ID, ev.Run.State, ev.Run.Error)
				}
				for state := ""; state != "completed"; {
					if err := watch.QueryRow(context.Background(), `SELECT state FROM river_job WHERE id = $1`, r.JobID).Scan(&state); err != nil {
						b.Fatal(err)
					}
					runtime.Gosched()
				}
				x := tr.Stop()
				if n == 0 && testing.Verbose() {
					b.Logf("statements of one run:\n%s", strings.Join(tr.Top(40), "\n"))
				}
				confirm.Statements, confirm.RoundTrips, confirm.River = confirm.Statements+c.Statements, confirm.RoundTrips+c.RoundTrips, confirm.River+c.River
				run.Statements, run.RoundTrips, run.River = run.Statements+x.Statements, run.RoundTrips+x.RoundTrips, run.River+x.River
				n++
			}
			f := float64(n)
			b.ReportMetric(float64(confirm.Statements)/f, "stmts/confirm")
			b.ReportMetric(float64(confirm.RoundTrips)/f, "trips/confirm")
			b.ReportMetric(float64(run.Statements)/f, "stmts/run")
			b.ReportMetric(float64(run.RoundTrips)/f, "trips/run")
			b.ReportMetric(float64(run.River)/f, "river_stmts/run")
		})
	}
}

package research_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
	"github.com/tokensforge/forgebot/research/market"
)

// agentBenchSteps is the tool steps of one benchmarked agent run (its
// answer makes one more model call).
const agentBenchSteps = 5

// scriptAgentBench makes the fake answer agentBenchSteps tool-calling turns
// (one price_summary each, the call's turn padded with text chunks so a
// step streams like a short model turn), then an answer. delay is the
// fake's wait per chunk.
func scriptAgentBench(fake *llmtest.Server, delay time.Duration) {
	pad := make([]string, 40)
	for i := range pad {
		pad[i] = "thinking "
	}
	fake.SetResponder(func(q llmtest.Request) (llmtest.Response, bool) {
		turns := assistantTurns(q)
		if turns >= agentBenchSteps {
			return llmtest.Stream(pad...).WithDelay(delay), true
		}
		syms := []string{"AAPL", "MSFT", "NVDA", "AMZN", "META"}
		return llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"`+syms[turns%len(syms)]+`","period":"3m"}`)).
			WithText(pad...).WithDelay(delay), true
	})
}

// bareAgentLoop is the baseline: a plain go-openai tool loop against the
// same fake, with the same tool work (market data, indicators, a JSON
// result) and no forgebot code around it: no reservation, no stored steps,
// no events.
func bareAgentLoop(b *testing.B, fake *llmtest.Server, mkt market.Provider) {
	cfg := openai.DefaultConfig("sk-bench-0123456789abcdef")
	cfg.BaseURL, cfg.HTTPClient = fake.URL(), fake.Client()
	api := openai.NewClientWithConfig(cfg)
	tool := openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "price_summary",
		Parameters: json.RawMessage(`{"type":"object","properties":{"symbol":{"type":"string"},"period":{"type":"string"}},"required":["symbol"]}`)}}
	msgs := []openai.ChatCompletionMessage{{Role: "system", Content: "You are an agent."}, {Role: "user", Content: "How are the megacaps doing?"}}
	for {
		stream, err := api.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{Model: "bench", Messages: msgs,
			Stream: true, StreamOptions: &openai.StreamOptions{IncludeUsage: true}, Tools: []openai.Tool{tool}, ToolChoice: "auto"})
		if err != nil {
			b.Fatal(err)
		}
		var text strings.Builder
		calls := map[int]*openai.ToolCall{}
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range resp.Choices {
				text.WriteString(c.Delta.Content)
				for _, tc := range c.Delta.ToolCalls {
					k := 0
					if tc.Index != nil {
						k = *tc.Index
					}
					if calls[k] == nil {
						calls[k] = &openai.ToolCall{ID: tc.ID, Type: openai.ToolTypeFunction, Function: openai.FunctionCall{Name: tc.Function.Name}}
					}
					calls[k].Function.Arguments += tc.Function.Arguments
				}
			}
		}
		stream.Close()
		if len(calls) == 0 {
			return
		}
		turn := openai.ChatCompletionMessage{Role: "assistant", Content: text.String()}
		var results []openai.ChatCompletionMessage
		for k := range len(calls) {
			c := calls[k]
			turn.ToolCalls = append(turn.ToolCalls, *c)
			var args struct{ Symbol string }
			_ = json.Unmarshal([]byte(c.Function.Arguments), &args)
			s, err := mkt.History(context.Background(), args.Symbol, 400*24*time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			ind := market.Compute(s, 92*24*time.Hour)
			out, _ := json.Marshal(map[string]any{"symbol": args.Symbol, "close": ind.Close, "rsi14": ind.RSI14, "return_3m": ind.Return3M})
			results = append(results, openai.ChatCompletionMessage{Role: "tool", ToolCallID: c.ID, Content: string(out)})
		}
		msgs = append(append(msgs, turn), results...)
	}
}

// BenchmarkAgentStepOverhead runs the same agent conversation (five tool
// steps and an answer) from the same fake through a bare go-openai tool
// loop and through the engine's agent loop (Execute on SQLite: every call
// reserved and written ahead, every step stored, tools validated and
// bounded, progress published), side by side, with the fake instant and
// with 1 and 5 ms per chunk (a turn of about 45 chunks: some 60 and 250 ms,
// a fast model and an ordinary one). ns/step is
// the time per model call.
func BenchmarkAgentStepOverhead(b *testing.B) {
	for _, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("delay_%s", delay), func(b *testing.B) {
			b.Run("bare_go_openai", func(b *testing.B) {
				fake := llmtest.NewServer(b)
				scriptAgentBench(fake, delay)
				mkt := market.NewDemo(func() time.Time { return time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC) })
				for b.Loop() {
					bareAgentLoop(b, fake, mkt)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*(agentBenchSteps+1)), "ns/step")
			})
			b.Run("engine_agent", func(b *testing.B) {
				bed := soloBed(b, false, false)
				bed.Fund(alice, billing.BucketCredit, 1000*billing.Micro)
				scriptAgentBench(bed.LLM, delay)
				var total time.Duration
				for b.Loop() {
					b.StopTimer()
					q, err := bed.Engine.Quote(context.Background(), research.Request{Kind: research.KindAsk, Depth: research.Agent,
						Question: "How are the megacaps doing?", Model: "gpt-solo", Owner: alice, AskOff: true})
					if err != nil {
						b.Fatal(err)
					}
					r, _, err := bed.Engine.Confirm(context.Background(), q.ID, alice, nil)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					start := time.Now()
					if err := bed.Engine.Execute(context.Background(), r.ID, 1, 1); err != nil {
						b.Fatal(err)
					}
					total += time.Since(start)
					b.StopTimer()
					if got, _ := bed.Store.Run(context.Background(), r.ID); got.State != research.Succeeded || got.Agent.ModelSteps() != agentBenchSteps+1 {
						b.Fatalf("run ended %s after %d steps (%s)", got.State, got.Agent.ModelSteps(), got.Error)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*(agentBenchSteps+1)), "ns/step")
			})
		})
	}
}

// BenchmarkAgentCancelLatency cancels agent runs while the model streams a
// tool call's arguments (an endless one, 1 ms per chunk, in the middle of
// a tool loop: after a finished tool step) and measures the time from
// Engine.Cancel to the fake seeing the connection close: after that no
// byte comes from upstream. It reports p50 and p99 over the iterations and
// checks that no call started after the cancel.
func BenchmarkAgentCancelLatency(b *testing.B) {
	bed := testbed.New(b, testbed.Options{RoutesFor: soloRoutes, NoWorkers: true, ProgressEvery: time.Millisecond})
	bed.Fund(alice, billing.BucketCredit, 1000*billing.Micro)
	endless := llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL","period":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`)).WithDelay(time.Millisecond)
	endless.Forever = true
	bed.LLM.SetResponder(func(q llmtest.Request) (llmtest.Response, bool) {
		if assistantTurns(q) == 0 {
			return llmtest.ToolCalls(llmtest.Call("indicators", `{"symbol":"MSFT"}`)), true
		}
		return endless, true
	})
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		// Drop disconnects of earlier iterations.
		for len(bed.LLM.Disconnected()) > 0 {
			<-bed.LLM.Disconnected()
		}
		q, err := bed.Engine.Quote(context.Background(), research.Request{Kind: research.KindAsk, Depth: research.Agent,
			Question: "AAPL?", Model: "gpt-solo", Owner: alice, AskOff: true})
		if err != nil {
			b.Fatal(err)
		}
		r, _, err := bed.Engine.Confirm(context.Background(), q.ID, alice, nil)
		if err != nil {
			b.Fatal(err)
		}
		before := len(bed.LLM.Requests())
		done := make(chan error, 1)
		go func() { done <- bed.Engine.Execute(context.Background(), r.ID, 1, 1) }()
		// The second call streams: wait for a few of its chunks.
		bed.Events.Wait(b, r.ID, time.Minute, func(ev research.Event) bool {
			return ev.Note == "writing" && ev.Run.Agent != nil && len(ev.Run.Agent.Steps) == 2 && ev.TokensOut > 20
		})
		b.StartTimer()
		start := time.Now()
		if _, err := bed.Engine.Cancel(context.Background(), r.ID, alice); err != nil {
			b.Fatal(err)
		}
		select {
		case <-bed.LLM.Disconnected():
			lat = append(lat, time.Since(start))
		case <-time.After(time.Minute):
			b.Fatal("the stream was not closed")
		}
		b.StopTimer()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if n := len(bed.LLM.Requests()) - before; n != 2 {
			b.Fatalf("%d model calls, want 2: a call started after the cancel", n)
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99_µs")
}

// BenchmarkAgentHeap holds 200 agent runs at once in their third model
// call (two tool steps stored in each) and reads the heap per running run.
func BenchmarkAgentHeap(b *testing.B) {
	const runs = 200
	for b.Loop() {
		b.StopTimer()
		bed := testbed.New(b, testbed.Options{RoutesFor: soloRoutes, NoWorkers: true})
		gate := make(chan struct{})
		bed.LLM.SetResponder(func(q llmtest.Request) (llmtest.Response, bool) {
			switch assistantTurns(q) {
			case 0:
				return llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`), llmtest.Call("indicators", `{"symbol":"AAPL"}`)), true
			case 1:
				return llmtest.ToolCalls(llmtest.Call("relative_performance", `{"symbols":["AAPL","MSFT","NVDA"]}`)), true
			}
			return llmtest.Stream("AAPL ", "is ", "firm.").WithGate(gate), true
		})
		var ids []string
		for i := range runs {
			who := billing.Identity{Platform: "bench", ExternalID: fmt.Sprint(i)}
			bed.Fund(who, billing.BucketCredit, billing.Micro)
			q, err := bed.Engine.Quote(context.Background(), research.Request{Kind: research.KindAsk, Depth: research.Agent,
				Question: "AAPL?", Model: "gpt-solo", Owner: who, AskOff: true})
			if err != nil {
				b.Fatal(err)
			}
			r, _, err := bed.Engine.Confirm(context.Background(), q.ID, who, nil)
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		runtime.GC()
		var before, during runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Go(func() {
				if err := bed.Engine.Execute(context.Background(), id, 1, 1); err != nil {
					b.Error(err)
				}
			})
		}
		<-bed.LLM.Received(3 * runs) // every run is in its third call, held at the gate
		runtime.ReadMemStats(&during)
		b.StopTimer()
		close(gate)
		wg.Wait()
		b.ReportMetric(float64(int64(during.HeapAlloc)-int64(before.HeapAlloc))/runs/1024, "heap_KiB/running_run")
		for _, id := range ids {
			if r, _ := bed.Store.Run(context.Background(), id); r.State != research.Succeeded {
				b.Fatalf("run %s: %s (%s)", id, r.State, r.Error)
			}
		}
		bed.CheckSettled()
		b.StartTimer()
	}
}

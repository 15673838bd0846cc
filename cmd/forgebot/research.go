package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/console"
	"github.com/tokensforge/forgebot/research"
)

// cliPlatform is the destination platform of `forgebot research` runs: the
// terminal of the process that started them.
const cliPlatform = "cli"

// cmdResearch is the one-shot command: quote, confirm (or --yes), progress on
// stderr, the report on stdout. SIGINT cancels the run and settles it.
func cmdResearch(ctx context.Context, cfg Config, args []string, io_ stdio) error {
	fs := flags("research")
	depth := fs.String("depth", "quick", "quick, standard, deep or agent")
	capFlag := fs.String("cap", "", "an agent run's cap in dollars, like 0.50 (default 0.50)")
	askOff := fs.Bool("ask-off", false, "an agent run wraps up at its cap without asking to continue")
	model := fs.String("model", "", "model (see /models); default: the catalog's")
	user := fs.String("user", "cli:local", "who pays: platform:id")
	yes := fs.Bool("yes", false, "confirm without asking")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var symbols []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return flagError(fs, err)
		}
		if fs.NArg() == 0 {
			break
		}
		symbols = append(symbols, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(symbols) == 0 {
		return badInput("research: name at least one symbol, like forgebot research AAPL --depth quick")
	}
	d, err := research.ParseDepth(*depth)
	if err != nil {
		return badInput("research: --depth: use quick, standard, deep or agent")
	}
	who, err := parseUser("research", *user)
	if err != nil {
		return err
	}
	req := research.Request{Kind: research.KindResearch, Symbols: symbols, Depth: d, Model: *model,
		Owner: who, Dest: research.Destination{Platform: cliPlatform, ChatID: who.String()}}
	if *capFlag != "" || *askOff {
		if d != research.Agent {
			return badInput("research: --cap and --ask-off are for --depth agent")
		}
		if req.Cap, err = parseCap("research", *capFlag); err != nil {
			return err
		}
		req.AskOff = *askOff
	}
	return oneShot(ctx, cfg, io_, "research", req, *yes, *asJSON)
}

// cmdAsk is the one-shot agent run: forgebot ask "QUESTION" --cap 0.50.
// At its ask-to-continue threshold it asks on stderr (c continue, w wrap up,
// x cancel); with no answer (stdin closed, or --ask-off) it wraps up.
func cmdAsk(ctx context.Context, cfg Config, args []string, io_ stdio) error {
	fs := flags("ask")
	capFlag := fs.String("cap", "", "the most the run may spend, in dollars, like 0.50 (default 0.50)")
	askOff := fs.Bool("ask-off", false, "wrap up at the cap without asking to continue")
	model := fs.String("model", "", "model (see /models); default: the catalog's")
	user := fs.String("user", "cli:local", "who pays: platform:id")
	yes := fs.Bool("yes", false, "confirm the quote without asking (Continue is still asked for)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var words []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return flagError(fs, err)
		}
		if fs.NArg() == 0 {
			break
		}
		words = append(words, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	question := strings.TrimSpace(strings.Join(words, " "))
	if question == "" {
		return badInput(`ask: ask a question, like forgebot ask "is NVDA overbought against the other semis?" --cap 0.50`)
	}
	who, err := parseUser("ask", *user)
	if err != nil {
		return err
	}
	c, err := parseCap("ask", *capFlag)
	if err != nil {
		return err
	}
	req := research.Request{Kind: research.KindAsk, Depth: research.Agent, Question: question, Cap: c, AskOff: *askOff, Model: *model,
		Owner: who, Dest: research.Destination{Platform: cliPlatform, ChatID: who.String()}}
	return oneShot(ctx, cfg, io_, "ask", req, *yes, *asJSON)
}

// parseCap reads --cap: "" is the default cap.
func parseCap(cmd, s string) (billing.Money, error) {
	if s == "" {
		return 0, nil
	}
	m, err := billing.ParseMoney(strings.TrimPrefix(s, "$"))
	if err != nil || m <= 0 {
		return 0, badInput("%s: --cap: an amount in dollars like 0.50", cmd)
	}
	return m, nil
}

// oneShot quotes req, confirms it (asking unless yes), follows the run on
// stderr and prints its result: the commands research and ask.
func oneShot(ctx context.Context, cfg Config, io_ stdio, name string, req research.Request, yes, asJSON bool) error {
	who := req.Owner
	cfg.localRuns = true // the run reports to this terminal: no serve may take it
	// The log (and so the references in error messages) goes to a file
	// next to a SQLite database; elsewhere it is not kept.
	var logTo io.Writer = io.Discard
	if strings.HasPrefix(cfg.DatabaseURL, "sqlite:") {
		if f, err := os.OpenFile(filepath.Join(filepath.Dir(sqlitePath(cfg.DatabaseURL)), "cli.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640); err == nil {
			defer f.Close()
			logTo = f
		}
	}
	a, err := newApp(ctx, cfg, "yahoo", false, slog.New(slog.NewTextHandler(logTo, nil)))
	if err != nil {
		return err
	}
	stopQuickly := false
	defer func() {
		if stopQuickly {
			stopWithin(a, 3*time.Second)
		} else {
			a.stop(10 * time.Second)
		}
	}()
	sink := &oneShotSink{conv: a.conv, progress: io_.err, terminal: io_.errTerminal, final: make(chan research.Event, 1), asks: make(chan research.Run, 1)}
	a.engine.Sink = sink

	q, err := quoteInterruptible(ctx, a, req, io_)
	if errors.Is(err, errInterruptedQuoting) {
		return &cliError{code: exitCancelled, err: fmt.Errorf("%s: interrupted while the quote was being made; nothing was held", name)}
	}
	if errors.Is(err, research.ErrBadRequest) || errors.Is(err, research.ErrNoRoute) {
		return badInput("%s: %s", name, strings.TrimPrefix(err.Error(), "bad request: "))
	}
	if err != nil {
		return err
	}
	stdin := bufio.NewReader(io_.in)
	var run research.Run
	for {
		qv := a.conv.QuoteView(q)
		qv.Buttons = nil // the prompt below is the confirm button
		console.Render(io_.err, qv)
		if !q.CanConfirm() {
			return &cliError{code: exitInsufficient, err: fmt.Errorf("%s: not enough in %s: short by %s; top up with forgebot wallet topup --user %s --bucket %s --amount 5.00 --key KEY",
				name, q.Bucket, q.Shortfall, who, q.Bucket)}
		}
		if ok, err := confirmPrompt(stdin, io_, q, yes); !ok {
			_, _ = a.engine.Decline(context.WithoutCancel(ctx), q.ID, who)
			return &cliError{code: exitCancelled, err: fmt.Errorf("%s: %s; nothing was held", name, err)}
		}
		if err := a.start(ctx); err != nil {
			return err
		}
		var nq research.Quote
		run, nq, err = a.engine.Confirm(ctx, q.ID, who, nil)
		switch {
		case errors.Is(err, research.ErrInsufficient):
			return &cliError{code: exitInsufficient, err: fmt.Errorf("%s: the balance no longer covers %s", name, nq.Hold)}
		case errors.Is(err, research.ErrQuoteExpired), errors.Is(err, research.ErrQuoteChanged):
			if yes { // --yes agreed to the quote printed, not to a new one
				return &cliError{code: exitFailure, err: fmt.Errorf("%s: %v before it was confirmed; nothing was held; run the command again", name, err)}
			}
			fmt.Fprintf(io_.err, "The quote %s: here is a new one.\n", strings.TrimPrefix(err.Error(), "quote "))
			q = nq
			continue
		case err != nil:
			return err
		}
		break
	}
	final, quit, err := awaitFinal(ctx, a, sink, run, who, io_, stdin)
	if quit {
		stopQuickly = true
	}
	if err != nil {
		return err
	}
	r := final.Run
	if asJSON {
		report := final.Report
		if report != nil {
			rep := bots.CleanReport(*report)
			report = &rep
		}
		out := map[string]any{"run_id": r.ID, "state": r.State, "captured_micros": r.Captured.Micros(), "bucket": r.Bucket,
			"tokens_in": r.TokensIn, "tokens_out": r.TokensOut, "receipt_url": final.ReceiptURL, "report": report, "notice": research.Notice}
		if err := json.NewEncoder(io_.out).Encode(out); err != nil {
			return err
		}
	} else {
		if final.Report != nil {
			// Cleaned: no escape sequence from a model reaches the terminal.
			fmt.Fprintln(io_.out, research.CleanText(bots.RenderReport(*final.Report)))
		} else if r.Error != "" {
			fmt.Fprintln(io_.out, research.CleanText(r.Error))
		}
		m := billing.Alike(r.Captured, r.Cap())
		fmt.Fprintf(io_.out, "\n%s: charged %s from %s (held %s). Receipt: %s\n", r.State, m[0], r.Bucket, m[1], final.ReceiptURL)
		if final.Report == nil {
			fmt.Fprintln(io_.out, research.Notice)
		}
	}
	switch r.State {
	case research.Succeeded, research.Partial:
		return nil
	case research.Cancelled:
		return &cliError{code: exitCancelled, err: fmt.Errorf("%s: cancelled; you paid for what was used", name)}
	}
	return &cliError{code: exitFailure, err: fmt.Errorf("%s: run %s: %s", name, r.State, r.Error)}
}

var errInterruptedQuoting = errors.New("interrupted while quoting")

// quoteInterruptible makes req's quote; a Ctrl-C (or SIGTERM) while it is
// being made (market data that does not answer, say) stops it at once.
func quoteInterruptible(ctx context.Context, a *app, req research.Request, io_ stdio) (research.Quote, error) {
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var interrupted atomic.Bool
	done, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-io_.interrupts:
			interrupted.Store(true)
			cancel()
		case <-done:
		}
	}()
	q, err := a.engine.Quote(qctx, req)
	close(done)
	<-watched // a Ctrl-C is either taken here or left for the prompt
	if interrupted.Load() {
		return research.Quote{}, errInterruptedQuoting
	}
	return q, err
}

// settleWait is how long the CLI waits, after a Ctrl-C, for the run to
// settle before it gives up and exits (the run still settles where it runs).
var settleWait = 5 * time.Second

// awaitFinal waits for run's final event. It also follows the run through
// the store, so a run that ended where this process cannot hear it still
// ends the wait. The first interrupt cancels the run and waits up to
// settleWait for it to settle; a second one, or the wait running out, exits
// at once (quit is then true: the caller must not wait for the workers).
func awaitFinal(ctx context.Context, a *app, sink *oneShotSink, run research.Run, who billing.Identity, io_ stdio, stdin *bufio.Reader) (ev research.Event, quit bool, err error) {
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	var giveUp, useStored <-chan time.Time
	var stored *research.Run
	interrupted := false
	stopped := func(why string) (research.Event, bool, error) {
		sink.endLine()
		return research.Event{}, true, &cliError{code: exitCancelled, err: fmt.Errorf("research: %s before run %s settled; it settles by itself (its hold is released at the latest when it lapses): see forgebot wallet show --user %s", why, run.ID, who)}
	}
	answers := make(chan string, 1)
	asking, lastAsk := false, time.Time{}
	for {
		select {
		case ev := <-sink.final:
			return ev, false, nil
		case r := <-sink.asks:
			// An agent run asks to continue: the answer is read in the
			// background, so a Ctrl-C is still heard.
			if asking || r.Agent == nil || r.Agent.Ask == nil || r.Agent.Ask.At.Equal(lastAsk) {
				continue
			}
			asking, lastAsk = true, r.Agent.Ask.At
			sink.endLine()
			fmt.Fprintf(io_.err, "The run paused to ask: %s.\nContinue with %s more held from %s [c], wrap up now [w], or cancel [x]? ",
				research.CleanText(r.Agent.Ask.Why), r.Agent.Ask.Extra, r.Bucket)
			go func() {
				line, err := stdin.ReadString('\n')
				if err != nil && line == "" {
					line = "w" // no one to answer: wrap up, as an unanswered ask does
				}
				answers <- strings.ToLower(strings.TrimSpace(line))
			}()
		case ans := <-answers:
			asking = false
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			var err error
			switch {
			case strings.HasPrefix(ans, "c"):
				_, err = a.engine.Continue(actx, run.ID, who)
			case strings.HasPrefix(ans, "x"):
				_, err = a.engine.Cancel(actx, run.ID, who)
			default:
				_, err = a.engine.WrapUp(actx, run.ID, who)
			}
			cancel()
			if err != nil {
				fmt.Fprintln(io_.err, research.CleanText(err.Error())+"; wrapping up")
				wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				_, _ = a.engine.WrapUp(wctx, run.ID, who)
				cancel()
			}
		case <-poll.C:
			// Bounded: a settle in progress may hold the store's connection.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
			r, err := a.store.Run(pctx, run.ID)
			cancel()
			if err == nil && r.State.Terminal() && stored == nil {
				// The final event follows the settle at once when this
				// process ran the run: give it a moment before the
				// store's account of it (no report) stands in.
				stored = &r
				t := time.NewTimer(2 * time.Second)
				defer t.Stop()
				useStored = t.C
			}
		case <-useStored:
			return a.engine.Snapshot(*stored, ""), false, nil
		case <-giveUp:
			return stopped(fmt.Sprintf("gave up after %s", settleWait))
		case <-io_.interrupts:
			if interrupted {
				return stopped("quit")
			}
			interrupted = true
			sink.endLine()
			fmt.Fprintln(io_.err, "cancelling… (settling what was used; Ctrl-C again to quit)")
			// In the background: the loop must still hear a second Ctrl-C.
			go func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleWait)
				defer cancel()
				if _, err := a.engine.Cancel(cctx, run.ID, who); err != nil && !errors.Is(err, research.ErrWrongState) && cctx.Err() == nil {
					fmt.Fprintln(io_.err, "cancel: "+err.Error())
				}
			}()
			t := time.NewTimer(settleWait)
			defer t.Stop()
			giveUp = t.C
		}
	}
}

// stopWithin stops a's workers but returns after at most d: a user who quit
// waits no longer (a run still settling finishes, or is settled by the next
// forgebot process or its hold's lapse).
func stopWithin(a *app, d time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.stop(d / 2)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// confirmPrompt asks to confirm q (unless --yes). Ctrl-C at the prompt, or
// one pressed while the quote was being made, is a no.
func confirmPrompt(stdin *bufio.Reader, io_ stdio, q research.Quote, yes bool) (bool, error) {
	select {
	case <-io_.interrupts:
		return false, errors.New("interrupted before confirming")
	default:
	}
	if yes {
		return true, nil
	}
	fmt.Fprintf(io_.err, "Confirm and hold %s? [y/N] ", q.Hold)
	answer := make(chan string, 1)
	go func() {
		line, _ := stdin.ReadString('\n')
		answer <- line
	}()
	select {
	case line := <-answer:
		if ans := strings.ToLower(strings.TrimSpace(line)); ans == "y" || ans == "yes" {
			return true, nil
		}
		return false, errors.New("not confirmed")
	case <-io_.interrupts:
		fmt.Fprintln(io_.err)
		return false, errors.New("interrupted before confirming")
	}
}

// oneShotSink shows a run's progress on stderr and hands over the final
// event. On a terminal it redraws one line in place; elsewhere (a file, a
// pipe) it writes a plain line when the stage or note changes, with no
// cursor controls.
type oneShotSink struct {
	conv     *bots.Conversation
	progress io.Writer
	terminal bool
	final    chan research.Event
	asks     chan research.Run // an agent run paused to ask its owner
	mu       sync.Mutex
	last     time.Time
	lastKey  string
	open     bool // a redrawn line is on screen without its newline
}

func (s *oneShotSink) Publish(ev research.Event) {
	if r := ev.Run; r.Agent != nil && r.Agent.Ask != nil && r.State == research.Paused && s.asks != nil {
		select {
		case s.asks <- r:
		default:
		}
	}
	if ev.Final {
		s.endLine()
		select {
		case s.final <- ev:
		default:
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The bar and stage, then the notes (queued, retrying, a symbol
	// that failed), but not "writing", which every token repeats.
	var says []string
	for _, l := range strings.Split(research.CleanText(s.conv.ProgressView(ev).Text), "\n") {
		if l = strings.TrimSpace(l); l != "" && l != "writing" {
			says = append(says, l)
		}
	}
	line := strings.Join(says, " | ")
	if !strings.Contains(line, "$") { // an agent run's line has its spend against the cap
		m := billing.Fine(ev.Cost, ev.Run.Cap())
		line += fmt.Sprintf("  %s of %s held", m[0], m[1])
	}
	if !s.terminal {
		// A plain line when what it says changes (the stage, the step,
		// the state), not for each token written: amounts and the bar
		// are not part of the key.
		key := progressNoise.ReplaceAllString(line, "")
		if key == s.lastKey {
			return
		}
		s.lastKey = key
		fmt.Fprintln(s.progress, line)
		return
	}
	if time.Since(s.last) < 200*time.Millisecond && ev.Note == "writing" {
		return
	}
	s.last = time.Now()
	// One terminal row: a longer line would wrap, and \r redraws only
	// its last row.
	if r := []rune(line); len(r) > 79 {
		line = string(r[:78]) + "…"
	}
	fmt.Fprintf(s.progress, "\r\033[K%s", line)
	s.open = true
}

// progressNoise is what changes in a progress line with every token: the
// amounts, the bar and its percentage.
var progressNoise = regexp.MustCompile(`\$[0-9]+\.[0-9]+|\[[░█]*\]|[0-9]+%`)

// endLine ends a redrawn progress line, so what follows starts on its own.
func (s *oneShotSink) endLine() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open {
		fmt.Fprintln(s.progress)
		s.open = false
	}
}

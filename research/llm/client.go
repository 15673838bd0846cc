package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"

	"github.com/tokensforge/forgebot/billing"
)

// Client streams chat completions across routes with retries, fallback and
// route health. The zero value is ready to use; set fields before the first
// call and do not change them while calls are running. One Client serves
// concurrent calls.
type Client struct {
	// HTTPClient carries the calls; nil = a shared default with dial and
	// TLS timeouts but no overall timeout, because streams are long.
	HTTPClient *http.Client
	// Health, when set, skips routes that are cooling down and is told the
	// outcome of every attempt. nil = no health tracking.
	Health *Health
	// Gate, when set, admits every attempt on a route with Limits within
	// them, across instances; a 429 that still comes is reported to it.
	Gate Gate

	MaxRetries    int           // retries per route after the first attempt; 0 = the default 2, negative = none
	BaseBackoff   time.Duration // the first retry's wait; default 500ms, doubled per retry, with jitter
	MaxBackoff    time.Duration // cap on the backoff; default 8s
	MaxRetryAfter time.Duration // cap on an honoured Retry-After; default 30s; a longer one moves on to the next route
	IdleTimeout   time.Duration // waiting this long for headers or the next chunk fails the attempt as a timeout; default 30s

	// Sleep waits between retries; tests inject it. The default waits on a
	// timer or ctx, whichever ends first, and returns ctx's cause.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time // default time.Now
	Log   *slog.Logger     // nil = no logging; keys are snake_case, API keys never logged

	// OnFailure is called synchronously for every failed attempt, as it
	// happens, before any backoff. It runs on the streaming goroutine, so it
	// should be quick: a cancel is not seen while it runs.
	OnFailure func(Failure)
}

// Result is what one Stream call produced, success or not.
type Result struct {
	Text  string // the answer; on cancel, the text of the attempt in flight so far
	Usage Usage  // what the answering (or cancelled) attempt used, with each figure's source
	// Route produced the answer, or was streaming when cancelled, or failed last.
	Route    Route
	Attempts int       // HTTP attempts made in all, over every route
	Failures []Failure // every failed attempt, in order, a cancelled one included
	// CrossBucket: the answer (or the cancelled stream) came from a route
	// whose bucket differs from routes[0]'s. Always false on ErrAllRoutesFailed.
	CrossBucket bool
	// FirstToken runs from the Stream call to the answer's first text, so it
	// includes failed attempts and backoffs: what the user waited. Health
	// records each attempt's own time to first token.
	FirstToken   time.Duration
	Duration     time.Duration // the whole Stream call
	FinishReason string        // the provider's finish_reason: "stop", "length", "content_filter", ...
	Skipped      []string      // ids of routes skipped because Health had them cooling down
	// Capped: the output reached Request.MaxTokens by the local count, so
	// the stream was closed there (FinishReason "length"); Text is cut to
	// the limit and Usage is the local count.
	Capped bool
	// Anomaly is set when the provider's usage was not believed (see
	// CheckUsage): Usage is then the local count and Reported what the
	// provider said. Its Class is ClassUsageAnomaly.
	Anomaly  *Failure
	Reported *Usage
	// ToolCalls are the calls the answer asked for (Request.Tools), in the
	// order of their stream index, assembled from the streamed deltas.
	// Arguments are as streamed: a stream closed at the output limit leaves
	// the last one cut.
	ToolCalls []ToolCall
}

// Defaults for the Client's zero fields.
const (
	DefaultMaxRetries    = 2
	DefaultBaseBackoff   = 500 * time.Millisecond
	DefaultMaxBackoff    = 8 * time.Second
	DefaultMaxRetryAfter = 30 * time.Second
	DefaultIdleTimeout   = 30 * time.Second
)

// errIdleTimeout is the cause set on an attempt's context when no byte came
// for IdleTimeout.
var errIdleTimeout = errors.New("no data from the server within the idle timeout")

// errBrokenStream reports a stream that ended without a finish_reason and
// without [DONE] (or with [DONE] but no text): the answer is incomplete.
var errBrokenStream = errors.New("stream ended before the answer finished")

// Stream sends req to routes in order: each route is tried, retried on 429,
// 5xx, timeouts, broken streams and in-stream errors (backoff honouring
// Retry-After, seconds or HTTP-date), then the next route is tried. The
// caller decides the order and which routes are allowed (same bucket first;
// the other bucket only with the user's consent). Disabled routes are
// skipped; so are routes Health has cooling down, unless every route is
// cooling down: then they are all tried anyway, in order. A 4xx other than
// 408 and 429 is not retried on the same route but falls back.
//
// onDelta(text, outTokens) is called for every text delta with the local
// estimate of output tokens streamed so far by this attempt. When an attempt
// fails after streaming, OnFailure reports it and the next attempt starts
// again from empty text and zero tokens: a live display should reset.
//
// Request.MaxTokens is enforced locally (Result.Capped), and provider usage
// is checked against the local count before it is believed (CheckUsage).
// With a Request.Budget, every attempt is reserved before it is made; when
// the budget refuses every remaining route, Stream returns ErrOverBudget.
//
// On ctx cancellation it returns at once with the partial Result (Text so
// far, Usage with the prompt and the delivered output tokens counted locally)
// and an error wrapping context.Cause(ctx); the HTTP connection is closed so
// the upstream stops generating. When every route fails it returns an error
// wrapping ErrAllRoutesFailed and the last Failure; with no enabled route,
// ErrNoRoutes.
func (c *Client) Stream(ctx context.Context, routes []Route, req Request, onDelta func(text string, outTokens int64)) (Result, error) {
	var res Result
	err := c.StreamInto(ctx, routes, &req, onDelta, &res)
	return res, err
}

// StreamInto is Stream writing its Result into res (which it sets whole),
// for a caller that keeps its stack small while the answer streams.
func (c *Client) StreamInto(ctx context.Context, routes []Route, req *Request, onDelta func(text string, outTokens int64), res *Result) error {
	*res = Result{}
	s := &call{c: c, ctx: ctx, req: *req, onDelta: onDelta, start: c.now(), log: c.logger(), res: res}
	return s.run(routes)
}

// call is the state of one Stream call. It lives on the heap, and the
// functions on the stack while an answer streams (run, try, attempt) keep
// small frames, so that a goroutine waiting on a model needs a small stack.
type call struct {
	c       *Client
	ctx     context.Context
	req     Request
	onDelta func(string, int64)
	start   time.Time
	log     *slog.Logger
	res     *Result
	prompt  int64 // local estimate, for cancels and missing usage

	hc          *http.Client
	msgs        []openai.ChatCompletionMessage
	firstBucket billing.Bucket
	last        Failure // the last failed attempt
	refused     error   // the budget's refusal of the last route tried
}

// routeCall is what the attempts on one route share.
type routeCall struct {
	route Route
	api   *openai.Client
	creq  openai.ChatCompletionRequest
}

func (s *call) run(routes []Route) error {
	s.prompt = CountRequestTokens(s.req)
	order := s.plan(routes)
	if len(order) == 0 {
		return s.done(ErrNoRoutes)
	}
	s.firstBucket = routes[0].Bucket()
	if s.ctx.Err() != nil {
		s.res.Route = order[0]
		return s.canceled(0, nil)
	}
	s.prepare()
	for i := range order {
		rc := s.forRoute(order, i)
		for try := 0; ; try++ {
			again, end, err := s.try(rc, try)
			if end {
				return err
			}
			if !again {
				break
			}
		}
	}
	return s.allFailed()
}

// prepare makes the HTTP client and the wire messages.
//
//go:noinline
func (s *call) prepare() {
	s.hc = s.c.httpClient()
	s.msgs = make([]openai.ChatCompletionMessage, len(s.req.Messages))
	for i, m := range s.req.Messages {
		s.msgs[i] = openai.ChatCompletionMessage{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		for _, c := range m.ToolCalls {
			s.msgs[i].ToolCalls = append(s.msgs[i].ToolCalls, openai.ToolCall{ID: c.ID, Type: openai.ToolTypeFunction,
				Function: openai.FunctionCall{Name: c.Name, Arguments: c.Arguments}})
		}
	}
}

// forRoute sets up the attempts on order[i].
//
//go:noinline
func (s *call) forRoute(order []Route, i int) *routeCall {
	route := order[i]
	if i > 0 {
		s.log.Info("llm falling back", "from", order[i-1].ID, "to", route.ID, "bucket", string(route.Bucket()))
	}
	rc := &routeCall{route: route, api: newAPI(route, s.hc), creq: chatRequest(route, s.msgs, s.req.MaxTokens)}
	addTools(&rc.creq, s.req)
	return rc
}

// try makes attempt number try on rc's route: end is true when the call
// ended (err is its outcome), again when the route is to be tried again
// (after the backoff, waited here), neither when the next route is next.
func (s *call) try(rc *routeCall, try int) (again, end bool, err error) {
	if !s.reserve(rc) {
		return false, false, nil
	}
	var pass Pass
	if g := s.c.Gate; g != nil && rc.route.Limits.Any() {
		p, err := s.enter(g, &rc.route)
		if err != nil || s.ctx.Err() != nil {
			// Cancelled while waiting in line: nothing was sent,
			// so nothing was used.
			s.res.Route = rc.route
			return false, true, s.canceledUnsent(err)
		}
		pass = p
	}
	s.res.Route = rc.route
	s.res.CrossBucket = rc.route.Bucket() != s.firstBucket
	s.res.Attempts++
	o := new(outcome)
	s.attempt(rc, o)
	return s.after(rc, try, o, pass)
}

// reserve asks the budget for an attempt on rc's route.
//
//go:noinline
func (s *call) reserve(rc *routeCall) bool {
	b := s.req.Budget
	if b == nil {
		return true
	}
	if err := b.Reserve(rc.route, s.prompt, int64(max(s.req.MaxTokens, 0))); err != nil {
		s.log.Info("llm attempt not made: over budget", "route", rc.route.ID, "err", err.Error())
		s.refused = err
		return false
	}
	return true
}

//go:noinline
func (s *call) enter(g Gate, route *Route) (Pass, error) {
	return g.Enter(s.ctx, *route, s.prompt+int64(max(s.req.MaxTokens, 0)), s.req.OnQueue)
}

// after handles an attempt's outcome o (see try).
//
//go:noinline
func (s *call) after(rc *routeCall, try int, o *outcome, pass Pass) (again, end bool, err error) {
	route := rc.route
	if pass != nil {
		ra, _ := parseRetryAfter(o.retryAfter, s.c.now())
		pass.Leave(o.status == http.StatusTooManyRequests, ra)
	}
	if o.err == nil {
		s.succeed(route, *o)
		s.spent(route, s.res.Usage)
		return false, true, s.done(nil)
	}
	f := s.fail(route, *o)
	if o.status > 0 && o.status < 300 {
		// The stream started: the provider bills the prompt and
		// what it sent.
		s.spent(route, localUsage(s.prompt, o.outTokens()))
	} else {
		s.spent(route, Usage{})
	}
	if f.Class == ClassCanceled {
		s.res.Text, s.res.ToolCalls = o.text, o.toolCalls
		if !o.firstTokenAt.IsZero() {
			s.res.FirstToken = o.firstTokenAt.Sub(s.start)
		}
		return false, true, s.canceled(o.outTokens(), nil)
	}
	s.last = f
	if !f.Class.Retryable() || try >= s.c.maxRetries() {
		return false, false, nil
	}
	wait := s.c.backoff(try)
	if ra, ok := parseRetryAfter(o.retryAfter, s.c.now()); ok {
		if ra > s.c.maxRetryAfter() {
			s.log.Info("llm retry-after too long, moving on", "route", route.ID, "retry_after", ra)
			return false, false, nil
		}
		wait = ra
	}
	s.log.Info("llm retrying", "route", route.ID, "attempt", try+2, "wait", wait)
	if err := s.c.sleep(s.ctx, wait); err != nil || s.ctx.Err() != nil {
		return false, true, s.canceled(0, err)
	}
	return true, false, nil
}

// allFailed ends a call no route answered.
//
//go:noinline
func (s *call) allFailed() error {
	s.res.CrossBucket = false // no answer came from any bucket
	if s.refused != nil {
		if s.last.Class != "" {
			return s.done(fmt.Errorf("%w: %w (after %w)", ErrOverBudget, s.refused, s.last))
		}
		return s.done(fmt.Errorf("%w: %w", ErrOverBudget, s.refused))
	}
	return s.done(fmt.Errorf("%w: %w", ErrAllRoutesFailed, s.last))
}

func (s *call) spent(route Route, u Usage) {
	if b := s.req.Budget; b != nil {
		b.Spent(route, u)
	}
}

// plan returns the routes to try: enabled ones, without those cooling down
// unless all of them are.
func (s *call) plan(routes []Route) []Route {
	var enabled []Route
	for _, r := range routes {
		if r.Enabled {
			enabled = append(enabled, r)
		}
	}
	h := s.c.Health
	if h == nil {
		return enabled
	}
	var avail []Route
	var skipped []string
	for _, r := range enabled {
		if h.Available(r.ID) {
			avail = append(avail, r)
		} else {
			skipped = append(skipped, r.ID)
		}
	}
	if len(avail) == 0 {
		if len(enabled) > 0 {
			s.log.Warn("llm every route is cooling down, trying them anyway", "routes", skipped)
		}
		return enabled
	}
	if len(skipped) > 0 {
		s.log.Info("llm skipping routes cooling down", "routes", skipped)
	}
	s.res.Skipped = skipped
	return avail
}

func (s *call) done(err error) error {
	s.res.Duration = s.c.now().Sub(s.start)
	return err
}

// canceled finishes a call whose context ended: the text so far stays, and
// usage is the local count of the prompt and of the output delivered by the
// attempt in flight (0 when the cancel came during a backoff). sleepErr is
// the error of an injected Sleep that failed without the context ending.
func (s *call) canceled(delivered int64, sleepErr error) error {
	s.res.Usage = localUsage(s.prompt, delivered)
	cause := context.Cause(s.ctx)
	if cause == nil {
		cause = sleepErr
	}
	return s.done(fmt.Errorf("llm: stream canceled: %w", cause))
}

// canceledUnsent finishes a call whose context ended while an attempt
// waited for its route's capacity: that attempt sent nothing, so the call
// used nothing beyond what earlier attempts reported (Budget.Spent).
func (s *call) canceledUnsent(err error) error {
	s.res.Usage = Usage{}
	cause := context.Cause(s.ctx)
	if cause == nil {
		cause = err
	}
	return s.done(fmt.Errorf("llm: stream canceled while queued for %s: %w", s.res.Route.ID, cause))
}

func (s *call) succeed(route Route, o outcome) {
	s.res.Text, s.res.ToolCalls = o.text, o.toolCalls
	s.res.FinishReason = o.finishReason
	if !o.firstTokenAt.IsZero() {
		s.res.FirstToken = o.firstTokenAt.Sub(s.start)
	}
	s.res.Capped = o.capped
	local := localUsage(s.prompt, o.outTokens())
	if o.capped {
		local.CompletionTokens = min(local.CompletionTokens, int64(s.req.MaxTokens))
	}
	if u := o.usage; u != nil && (u.PromptTokens != 0 || u.CompletionTokens != 0) && !o.capped {
		reported := Usage{
			PromptTokens: int64(u.PromptTokens), CompletionTokens: int64(u.CompletionTokens),
			PromptSource: billing.UsageProvider, CompletionSource: billing.UsageProvider,
		}
		if why := CheckUsage(reported, local, int64(s.req.MaxTokens), int64(route.MaxContext)); why != "" {
			s.res.Usage, s.res.Reported = local, &reported
			s.res.Anomaly = &Failure{
				Route: route.ID, Bucket: route.Bucket(), HTTPStatus: o.status, Class: ClassUsageAnomaly, At: s.c.now(),
				Err: fmt.Errorf("provider usage %d in / %d out not believed (%s); charged the local count %d in / %d out",
					reported.PromptTokens, reported.CompletionTokens, why, local.PromptTokens, local.CompletionTokens),
				DeliveredTokens: o.outTokens(),
			}
			s.log.Warn("llm usage anomaly", "route", route.ID, "reported_in", reported.PromptTokens,
				"reported_out", reported.CompletionTokens, "local_in", local.PromptTokens, "local_out", local.CompletionTokens, "why", why)
		} else {
			s.res.Usage = reported
		}
	} else {
		// No usage, an all-zero one (some servers send that for "unknown"),
		// or a stream we closed at the limit: an estimate is more honest
		// than charging nothing.
		s.res.Usage = local
	}
	if h := s.c.Health; h != nil {
		// A route whose usage cannot be believed is not healthy.
		h.Record(route.ID, s.res.Anomaly == nil, o.ttft(), s.res.Usage.CompletionTokens, o.ended.Sub(o.started))
	}
	s.log.Debug("llm answered", "route", route.ID, "attempts", s.res.Attempts,
		"prompt_tokens", s.res.Usage.PromptTokens, "completion_tokens", s.res.Usage.CompletionTokens,
		"usage_source", string(s.res.Usage.CompletionSource))
}

// fail records a failed attempt everywhere it must go: the Result, OnFailure,
// the log and Health.
func (s *call) fail(route Route, o outcome) Failure {
	f := Failure{
		Route: route.ID, Bucket: route.Bucket(), HTTPStatus: o.status, Class: o.class,
		Err: redact(o.err, route.APIKey), At: s.c.now(), DeliveredTokens: o.outTokens(),
	}
	if ra, ok := parseRetryAfter(o.retryAfter, f.At); ok {
		f.RetryAfter = ra
	}
	s.res.Failures = append(s.res.Failures, f)
	if s.c.OnFailure != nil {
		s.c.OnFailure(f)
	}
	level := slog.LevelWarn
	if f.Class == ClassCanceled {
		level = slog.LevelInfo
	}
	s.log.Log(context.WithoutCancel(s.ctx), level, "llm attempt failed", "route", f.Route, "bucket", string(f.Bucket),
		"class", string(f.Class), "http_status", f.HTTPStatus, "attempt", s.res.Attempts,
		"delivered_tokens", f.DeliveredTokens, "err", f.Err.Error())
	if h := s.c.Health; h != nil && f.Class != ClassCanceled && !requestFault(f.HTTPStatus) {
		h.Record(route.ID, false, o.ttft(), f.DeliveredTokens, o.ended.Sub(o.started))
	}
	return f
}

// requestFault reports statuses that blame the request (too long, malformed)
// rather than the route, so they do not count against its health.
func requestFault(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge ||
		status == http.StatusUnprocessableEntity
}

// outcome is one attempt's result.
type outcome struct {
	text         string
	outBytes     int64 // text plus reasoning bytes streamed
	usage        *openai.Usage
	finishReason string
	started      time.Time
	firstTokenAt time.Time
	ended        time.Time
	status       int
	retryAfter   string
	err          error
	class        ErrorClass
	capped       bool // closed at Request.MaxTokens
	toolCalls    []ToolCall
}

// outTokens is the local estimate of output tokens streamed so far.
func (o *outcome) outTokens() int64 { return tokensForBytes(o.outBytes) }

func (o *outcome) ttft() time.Duration {
	if o.firstTokenAt.IsZero() {
		return 0
	}
	return o.firstTokenAt.Sub(o.started)
}

// attempt makes one HTTP call on rc's route and streams it into o, to the
// end, a failure or a cancel. What it keeps while it reads (the text, the
// tool calls) is in attemptState on the heap; each chunk is handled in a
// frame of its own (take).
func (s *call) attempt(rc *routeCall, o *outcome) {
	a := &attemptState{o: o, x: &exchange{}, limit: int64(max(s.req.MaxTokens, 0)), idle: s.c.idleTimeout()}
	actx, cancel := context.WithCancelCause(withExchange(s.ctx, a.x))
	defer cancel(nil)
	a.actx = actx
	// The idle timer cancels the attempt's context: that closes the
	// connection, which ends a blocked Recv at once.
	a.timer = time.AfterFunc(a.idle, func() { cancel(errIdleTimeout) })
	defer a.timer.Stop()
	o.started = s.c.now()
	defer s.ended(a)

	stream, err := s.open(rc, actx)
	if err != nil {
		o.err = err
		return
	}
	defer stream.Close()
	for {
		// Rearmed before each read, not after: time spent in onDelta (a
		// chat platform's rate limit, say) is ours, not the server's.
		a.timer.Reset(a.idle)
		chunk, err := stream.Recv()
		if err != nil {
			s.recvFailed(rc, a, err)
			return
		}
		if s.take(a, &chunk) {
			return
		}
	}
}

// attemptState is one attempt's reading state.
type attemptState struct {
	o     *outcome
	x     *exchange
	actx  context.Context
	timer *time.Timer
	idle  time.Duration
	limit int64
	text  strings.Builder
	calls toolCallBuilder
}

//go:noinline
func (s *call) open(rc *routeCall, actx context.Context) (*openai.ChatCompletionStream, error) {
	return rc.api.CreateChatCompletionStream(actx, rc.creq)
}

// ended completes the outcome of an attempt.
//
//go:noinline
func (s *call) ended(a *attemptState) {
	o, x := a.o, a.x
	o.ended = s.c.now()
	o.text = a.text.String()
	o.toolCalls = a.calls.calls()
	o.status = x.status
	o.retryAfter = x.retryAfter
	if o.err != nil {
		o.class = classify(s.ctx, a.actx, o.err, x)
		// go-openai reports both as "context canceled": say what happened.
		switch {
		case o.class == ClassCanceled:
			o.err = fmt.Errorf("canceled: %w", context.Cause(s.ctx))
		case errors.Is(context.Cause(a.actx), errIdleTimeout):
			o.err = fmt.Errorf("%w (%v)", errIdleTimeout, a.idle)
		}
	}
}

// recvFailed records why reading the stream stopped.
//
//go:noinline
func (s *call) recvFailed(rc *routeCall, a *attemptState, err error) {
	o := a.o
	switch {
	case s.ctx.Err() != nil || a.actx.Err() != nil:
		o.err = err
	case o.finishReason != "":
		// The answer finished; only the usage chunk (or [DONE]) was
		// lost. Usage will be counted locally.
		if !errors.Is(err, io.EOF) {
			s.log.Debug("llm stream cut after finish", "route", rc.route.ID, "err", redact(err, rc.route.APIKey).Error())
		}
	case errors.Is(err, io.EOF) && a.x.sawDone && (a.text.Len() > 0 || a.calls.any()):
		// [DONE] without a finish_reason: some servers omit it.
	case errors.Is(err, io.EOF):
		o.err = errBrokenStream
	default:
		o.err = err
	}
}

// take handles one chunk; it reports whether the attempt is over (the
// output limit reached).
//
//go:noinline
func (s *call) take(a *attemptState, chunk *openai.ChatCompletionStreamResponse) bool {
	o, limit := a.o, a.limit
	if chunk.Usage != nil {
		o.usage = chunk.Usage
	}
	for _, ch := range chunk.Choices {
		if ch.Index != 0 {
			continue // n > 1 is never asked for
		}
		if ch.FinishReason != "" {
			o.finishReason = string(ch.FinishReason)
		}
		// Reasoning text is billed as output but is not the answer.
		o.outBytes += int64(len(ch.Delta.ReasoningContent))
		if d := ch.Delta.Content; d != "" {
			if a.text.Len() == 0 {
				o.firstTokenAt = s.c.now()
			}
			if limit > 0 {
				// Keep no more than the limit allows: one oversized
				// chunk must not carry the rest of the output.
				d = cutBytes(d, limit*bytesPerToken-o.outBytes)
			}
			a.text.WriteString(d)
			o.outBytes += int64(len(d))
			if s.onDelta != nil && d != "" {
				s.onDelta(d, o.outTokens())
			}
		}
		for _, tc := range ch.Delta.ToolCalls {
			// A tool call's name and arguments are output the provider
			// bills, streamed in fragments under the call's index.
			if o.firstTokenAt.IsZero() {
				o.firstTokenAt = s.c.now()
			}
			frag := tc.Function.Arguments
			if limit > 0 {
				frag = cutBytes(frag, limit*bytesPerToken-o.outBytes)
			}
			o.outBytes += a.calls.add(tc, frag)
			if s.onDelta != nil {
				s.onDelta("", o.outTokens())
			}
		}
		if limit > 0 && o.outTokens() >= limit {
			// The limit is ours to keep, whatever the route does with
			// max_tokens: stop reading (closing the stream closes the
			// connection, so the upstream stops generating).
			o.capped, o.finishReason = true, "length"
			if a.text.Len() == 0 && !a.calls.any() {
				o.err = errNoAnswerInLimit
			}
			return true
		}
	}
	return false
}

// errNoAnswerInLimit: the output limit was used up (by reasoning text, say)
// before any answer text came.
var errNoAnswerInLimit = errors.New("the output limit was reached before any answer text")

// cutBytes returns the longest prefix of s of at most n bytes that ends on
// a UTF-8 boundary.
func cutBytes(s string, n int64) string {
	if n <= 0 {
		return ""
	}
	if int64(len(s)) <= n {
		return s
	}
	i := int(n)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// classify names why an attempt failed. The caller's context is checked
// first: once it ended, every error is a consequence of the cancel.
func classify(ctx, actx context.Context, err error, x *exchange) ErrorClass {
	if ctx.Err() != nil {
		return ClassCanceled
	}
	if errors.Is(err, errNoAnswerInLimit) {
		return ClassClient // the same request would use the limit up again
	}
	if errors.Is(context.Cause(actx), errIdleTimeout) {
		return ClassTimeout
	}
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		if apiErr.HTTPStatusCode == 0 {
			return ClassStreamError // go-openai leaves it 0 for an error object inside a 200 stream
		}
		return classifyStatus(apiErr.HTTPStatusCode)
	}
	var reqErr *openai.RequestError
	if errors.As(err, &reqErr) && reqErr.HTTPStatusCode != 0 {
		return classifyStatus(reqErr.HTTPStatusCode)
	}
	if !x.sent {
		// go-openai refused the request before sending it (unknown
		// parameter for that model, say): trying again cannot help.
		return ClassClient
	}
	if x.status != 0 {
		// The headers came and the body went wrong: cut, garbled, or too
		// many empty lines.
		return ClassBroken
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	return ClassConnection
}

func classifyStatus(status int) ErrorClass {
	switch {
	case status == http.StatusTooManyRequests:
		return ClassRateLimited
	case status == http.StatusRequestTimeout:
		return ClassTimeout
	case status >= 400 && status < 500:
		return ClassClient
	default:
		// 5xx, and any other status go-openai treats as failure (1xx): the
		// server side is at fault, so retrying is reasonable.
		return ClassServerError
	}
}

// toolCallBuilder assembles streamed tool calls: the first delta of a call
// carries its index, id and name, the next ones fragments of its arguments
// under the same index. Servers that send no index (one call at a time)
// are read as index 0; a delta with a new id starts a new call.
type toolCallBuilder struct {
	order []int
	by    map[int]*ToolCall
}

// add takes one delta with its (possibly cut) argument fragment and returns
// the bytes of output it carried.
func (b *toolCallBuilder) add(tc openai.ToolCall, frag string) int64 {
	if b.by == nil {
		b.by = map[int]*ToolCall{}
	}
	idx := len(b.order) - 1
	switch {
	case tc.Index != nil:
		idx = *tc.Index
	case idx < 0 || (tc.ID != "" && b.by[idx].ID != "" && tc.ID != b.by[idx].ID):
		idx = len(b.order)
	}
	c, ok := b.by[idx]
	if !ok {
		c = &ToolCall{}
		b.by[idx] = c
		b.order = append(b.order, idx)
	}
	if tc.ID != "" {
		c.ID = tc.ID
	}
	c.Name += tc.Function.Name
	c.Arguments += frag
	return int64(len(tc.ID) + len(tc.Function.Name) + len(frag))
}

func (b *toolCallBuilder) any() bool { return len(b.order) > 0 }

// calls returns the calls in index order.
func (b *toolCallBuilder) calls() []ToolCall {
	if len(b.order) == 0 {
		return nil
	}
	idx := append([]int(nil), b.order...)
	sort.Ints(idx)
	out := make([]ToolCall, len(idx))
	for i, k := range idx {
		out[i] = *b.by[k]
	}
	return out
}

// addTools puts a request's tools on the wire: function tools with their
// schemas, several calls allowed per answer, and the tool choice.
func addTools(r *openai.ChatCompletionRequest, req Request) {
	if len(req.Tools) == 0 {
		return
	}
	for _, t := range req.Tools {
		r.Tools = append(r.Tools, openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name: t.Name, Description: t.Description, Parameters: t.Parameters}})
	}
	switch req.ToolChoice {
	case ToolChoiceNone:
		r.ToolChoice = ToolChoiceNone
	default:
		r.ToolChoice = ToolChoiceAuto
		r.ParallelToolCalls = true
	}
}

func newAPI(route Route, hc *http.Client) *openai.Client {
	cfg := openai.DefaultConfig(route.APIKey)
	if route.BaseURL != "" {
		cfg.BaseURL = route.BaseURL
	}
	cfg.HTTPClient = hc
	return openai.NewClientWithConfig(cfg)
}

// chatRequest builds the streaming request for a route. Usage is always asked
// for; servers that ignore it are handled by counting locally.
func chatRequest(route Route, msgs []openai.ChatCompletionMessage, maxTokens int) openai.ChatCompletionRequest {
	r := openai.ChatCompletionRequest{
		Model:         route.Model,
		Messages:      msgs,
		Stream:        true,
		StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	}
	if maxTokens > 0 {
		r.MaxTokens = maxTokens
		// OpenAI's reasoning models refuse max_tokens; go-openai knows which
		// they are. Everyone else, compatible servers included, takes max_tokens.
		if errors.Is(openai.NewReasoningValidator().Validate(r), openai.ErrReasoningModelMaxTokensDeprecated) {
			r.MaxTokens, r.MaxCompletionTokens = 0, maxTokens
		}
	}
	return r
}

func (c *Client) httpClient() *http.Client {
	base := c.HTTPClient
	if base == nil {
		base = defaultHTTPClient()
	}
	hc := *base
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = &captureTransport{base: rt}
	return &hc
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) logger() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Client) maxRetries() int {
	switch {
	case c.MaxRetries < 0:
		return 0
	case c.MaxRetries == 0:
		return DefaultMaxRetries
	}
	return c.MaxRetries
}

func (c *Client) maxRetryAfter() time.Duration {
	if c.MaxRetryAfter > 0 {
		return c.MaxRetryAfter
	}
	return DefaultMaxRetryAfter
}

func (c *Client) idleTimeout() time.Duration {
	if c.IdleTimeout > 0 {
		return c.IdleTimeout
	}
	return DefaultIdleTimeout
}

// backoff is the wait before retry number try+1 on a route: BaseBackoff
// doubled per retry, capped at MaxBackoff, with "equal jitter" (half fixed,
// half random) so concurrent runs hitting the same limit spread out but
// never retry at once.
func (c *Client) backoff(try int) time.Duration {
	base, ceiling := c.BaseBackoff, c.MaxBackoff
	if base <= 0 {
		base = DefaultBaseBackoff
	}
	if ceiling <= 0 {
		ceiling = DefaultMaxBackoff
	}
	d := ceiling
	if try < 30 && base<<try > 0 && base<<try < ceiling {
		d = base << try
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

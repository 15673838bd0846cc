// Package llmtest is an httptest fake of an OpenAI-compatible streaming chat
// completions API, for the tests of research/llm and of everything that
// calls models through it.
//
// A Server answers POST {URL}/chat/completions with scripted Responses taken
// from a queue in arrival order, and a default when the queue is empty. It
// records every request, counts the chunks it actually wrote and signals
// when a client goes away in the middle of a stream. It never sleeps to
// synchronise: slow streams use a Delay timer or a Gate channel the test
// controls, and every wait also ends when the client disconnects or the
// server closes.
package llmtest

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is the fake API. Create it with NewServer.
type Server struct {
	srv  *httptest.Server
	quit chan struct{}
	once sync.Once

	mu    sync.Mutex
	queue []Response
	def   Response
	// responder, when set, answers a request before the queue: a server
	// that honours tool_choice "none", say.
	responder func(Request) (Response, bool)
	reqs      []Request
	// waiters are closed once that many requests have arrived (Received).
	waiters map[int][]chan struct{}

	streamed map[int]int64 // text bytes written, by request index

	disconnects chan Disconnect
	chunks      atomic.Int64
	dropped     atomic.Int64
	// active counts completions being answered, maxActive the most at once.
	active, maxActive atomic.Int64
}

// Request is what the fake received.
type Request struct {
	Index               int // 0 for the first request this server saw
	Method, Path        string
	Model               string
	Messages            []Message
	MaxTokens           int
	MaxCompletionTokens int
	Stream              bool
	StreamOptions       *StreamOptions // nil when the request sent none
	Authorization       bool           // an Authorization header was present
	BearerToken         string         // the token after "Bearer ", so tests can check which key a route used
	Body                []byte
	// Proto is the HTTP version the request came over ("HTTP/1.1", "HTTP/2.0").
	Proto string
	// Tools names the tools the request offered, in order; ToolChoice is
	// its tool_choice ("" when none was sent).
	Tools      []string
	ToolChoice string
}

// IncludeUsage reports whether the request asked for a final usage chunk.
func (r Request) IncludeUsage() bool { return r.StreamOptions != nil && r.StreamOptions.IncludeUsage }

// Message is one chat message of a request: an assistant turn may carry
// tool calls, a tool turn the id of the call it answers.
type Message struct {
	Role       string         `json:"role"`
	Content    string         `json:"content"`
	ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

// CallNames lists the names of the tool calls an assistant message carries.
func (m Message) CallNames() []string {
	var out []string
	for _, c := range m.ToolCalls {
		out = append(out, c.Function.Name)
	}
	return out
}

type wireToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// StreamOptions is the request's stream_options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Disconnect reports a client that went away before its stream ended.
type Disconnect struct {
	Request int // the Request.Index
	Chunks  int // text chunks written to it before it left
}

// disconnectBuffer bounds unread disconnect signals; more are counted and dropped
// rather than block a handler.
const disconnectBuffer = 64

// NewServer starts a fake and closes it when the test ends. Its default
// response is Stream("Hello", " from", " llmtest.").
func NewServer(tb testing.TB) *Server {
	s := newServer()
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

// NewTLSServer is NewServer over HTTPS with HTTP/2 offered (ALPN h2), as
// providers serve; Certificate is what a client must trust.
func NewTLSServer(tb testing.TB) *Server {
	s := newServer()
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

func newServer() *Server {
	return &Server{
		quit:        make(chan struct{}),
		def:         Stream("Hello", " from", " llmtest."),
		disconnects: make(chan Disconnect, disconnectBuffer),
	}
}

// Certificate is the TLS server's certificate (nil for a plain server).
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// URL is the OpenAI-compatible base URL, ending in /v1.
func (s *Server) URL() string { return s.srv.URL + "/v1" }

// Client is an *http.Client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close releases every waiting handler and stops the server. It is safe to
// call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.quit)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// Enqueue adds responses for the next requests, in order.
func (s *Server) Enqueue(rs ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, rs...)
}

// SetDefault sets the response used when the queue is empty.
func (s *Server) SetDefault(r Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = r
}

// SetResponder sets a function that may answer a request before the
// queue and the default (ok false leaves it to them): a scripted model
// that answers in text when a request allows no tool calls, say.
func (s *Server) SetResponder(f func(Request) (Response, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responder = f
}

// ClearQueue drops every queued response not yet used.
func (s *Server) ClearQueue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = nil
}

// Pending is the number of queued responses not yet used.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Requests returns a copy of every request received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	copy(out, s.reqs)
	return out
}

// StreamedBytes is how many bytes of answer text the fake wrote to request
// number index: what a real provider would have generated (and billed) for
// it, whatever the client kept.
func (s *Server) StreamedBytes(index int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streamed[index]
}

// Received returns a channel closed once n requests have arrived.
func (s *Server) Received(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	if len(s.reqs) >= n {
		close(ch)
		return ch
	}
	if s.waiters == nil {
		s.waiters = map[int][]chan struct{}{}
	}
	s.waiters[n] = append(s.waiters[n], ch)
	return ch
}

// Disconnected delivers a Disconnect each time a client leaves in the middle
// of a stream (its connection closed while the fake was waiting or writing).
// Up to 64 unread signals are kept; see Dropped.
func (s *Server) Disconnected() <-chan Disconnect { return s.disconnects }

// Dropped counts disconnect signals lost because nobody read Disconnected.
func (s *Server) Dropped() int64 { return s.dropped.Load() }

// ChunksWritten counts the text chunks written and flushed to clients, over
// all requests. A chunk being written is already counted (and uncounted if the
// write fails), so a client that received a chunk always finds it counted.
func (s *Server) ChunksWritten() int64 { return s.chunks.Load() }

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		writeError(w, Response{Status: http.StatusNotFound, Body: ErrorJSON("invalid_request_error", "unknown endpoint "+r.URL.Path)})
		return
	}
	// A request is active from here until its answer's end is about to be
	// written (the finish chunk, or an error's body), so a client that saw
	// the end always finds it counted out.
	var once sync.Once
	n := s.active.Add(1)
	for m := s.maxActive.Load(); n > m && !s.maxActive.CompareAndSwap(m, n); m = s.maxActive.Load() {
	}
	end := func() { once.Do(func() { s.active.Add(-1) }) }
	defer end()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var in struct {
		Model               string         `json:"model"`
		Messages            []Message      `json:"messages"`
		MaxTokens           int            `json:"max_tokens"`
		MaxCompletionTokens int            `json:"max_completion_tokens"`
		Stream              bool           `json:"stream"`
		StreamOptions       *StreamOptions `json:"stream_options"`
		Tools               []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
		ToolChoice any `json:"tool_choice"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, Response{Status: http.StatusBadRequest, Body: ErrorJSON("invalid_request_error", "body is not JSON")})
		return
	}
	auth := r.Header.Get("Authorization")
	rec := Request{
		Method: r.Method, Path: r.URL.Path, Model: in.Model, Messages: in.Messages,
		MaxTokens: in.MaxTokens, MaxCompletionTokens: in.MaxCompletionTokens,
		Stream: in.Stream, StreamOptions: in.StreamOptions,
		Authorization: auth != "", BearerToken: strings.TrimPrefix(auth, "Bearer "), Body: body, Proto: r.Proto,
	}
	for _, t := range in.Tools {
		rec.Tools = append(rec.Tools, t.Function.Name)
	}
	if tc, ok := in.ToolChoice.(string); ok {
		rec.ToolChoice = tc
	} else if in.ToolChoice != nil {
		rec.ToolChoice = "function"
	}
	s.mu.Lock()
	rec.Index = len(s.reqs)
	s.reqs = append(s.reqs, rec)
	for _, ch := range s.waiters[len(s.reqs)] {
		close(ch)
	}
	delete(s.waiters, len(s.reqs))
	resp := s.def
	answered := false
	if s.responder != nil {
		resp, answered = s.responder(rec)
	}
	if !answered {
		resp = s.def
		if len(s.queue) > 0 {
			resp, s.queue = s.queue[0], s.queue[1:]
		}
	}
	s.mu.Unlock()

	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if resp.Status >= 400 {
		end()
		writeError(w, resp)
		return
	}
	s.stream(w, r, rec, resp, end)
}

// MaxActive is the most requests the server answered at once.
func (s *Server) MaxActive() int64 { return s.maxActive.Load() }

// Active counts requests being answered now.
func (s *Server) Active() int64 { return s.active.Load() }

func writeError(w http.ResponseWriter, resp Response) {
	ct := resp.ContentType
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(resp.Status)
	io.WriteString(w, resp.Body)
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, rec Request, resp Response, end func()) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	written := 0
	left := func() { s.disconnected(Disconnect{Request: rec.Index, Chunks: written}) }
	if rc.Flush() != nil {
		left()
		return
	}
	id := fmt.Sprintf("chatcmpl-llmtest-%d", rec.Index)
	created := time.Now().Unix()
	send := func(c chunk) error {
		c.ID, c.Object, c.Created, c.Model = id, "chat.completion.chunk", created, rec.Model
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		return s.event(w, rc, b)
	}
	// emit writes one delta and counts it, with n bytes toward what the
	// request was streamed. It is counted before the write, so a client that
	// has seen the chunk always finds it counted, and taken back if the write
	// fails (the client left: emit reports false).
	emit := func(d delta, n int64) bool {
		written++
		s.chunks.Add(1)
		if send(chunk{Choices: []choice{{Delta: d}}}) != nil {
			written--
			s.chunks.Add(-1)
			left()
			return false
		}
		s.mu.Lock()
		if s.streamed == nil {
			s.streamed = map[int]int64{}
		}
		s.streamed[rec.Index] += n
		s.mu.Unlock()
		return true
	}
	for i := 0; i < len(resp.Chunks) || (resp.Forever && len(resp.Chunks) > 0 && len(resp.ToolCalls) == 0); i++ {
		text := resp.Chunks[i%len(resp.Chunks)]
		if !s.wait(r, resp) {
			left()
			return
		}
		d := delta{Content: text}
		if i == 0 {
			d.Role = "assistant"
		}
		if !emit(d, int64(len(text))) {
			return
		}
	}
	// Tool calls stream as real servers send them: per call, a first delta
	// with its index, id, type and name, then its arguments in fragments
	// under the same index; calls one after another.
	for k, tc := range resp.ToolCalls {
		frags := splitArgs(tc.Arguments, max(resp.ArgChunks, 1))
		for j := 0; j < len(frags) || (resp.Forever && j < 1<<30); j++ {
			if !s.wait(r, resp) {
				left()
				return
			}
			var w wireToolCall
			idx := k
			w.Index = &idx
			if j == 0 {
				w.ID, w.Type, w.Function.Name = tc.ID, "function", tc.Name
				if w.ID == "" {
					w.ID = fmt.Sprintf("call_%d_%d", rec.Index, k)
				}
			}
			frag := ""
			if j < len(frags) {
				frag = frags[j]
			} else {
				frag = frags[j%len(frags)] // Forever: arguments that never end
			}
			w.Function.Arguments = frag
			d := delta{ToolCalls: []wireToolCall{w}}
			if k == 0 && j == 0 && len(resp.Chunks) == 0 {
				d.Role = "assistant"
			}
			if !emit(d, int64(len(frag)+len(w.Function.Name)+len(w.ID))) {
				return
			}
		}
	}
	switch {
	case resp.ErrorEvent != "":
		s.event(w, rc, []byte(resp.ErrorEvent))
		return
	case resp.Break && resp.CleanEOF:
		return
	case resp.Break:
		// The documented way to abort a response: net/http closes the
		// connection without the chunked terminator, so the client reads
		// an unexpected EOF, as when a proxy drops the connection.
		panic(http.ErrAbortHandler)
	}
	if !resp.NoFinish {
		reason := resp.FinishReason
		if reason == "" {
			reason = "stop"
			if len(resp.ToolCalls) > 0 {
				reason = "tool_calls"
			}
		}
		end()
		if send(chunk{Choices: []choice{{Delta: delta{}, FinishReason: &reason}}}) != nil {
			left()
			return
		}
	}
	if rec.IncludeUsage() && !resp.NoUsage {
		u := DefaultUsage(len(rec.Messages), len(resp.Chunks)+len(resp.ToolCalls))
		if resp.Usage != nil {
			u = *resp.Usage
		}
		if send(chunk{Choices: []choice{}, Usage: &u}) != nil {
			left()
			return
		}
	}
	end()
	if s.event(w, rc, []byte("[DONE]")) != nil {
		left()
	}
}

// event writes one SSE data line and flushes it, so the client sees it now.
func (s *Server) event(w io.Writer, rc *http.ResponseController, data []byte) error {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return rc.Flush()
}

// wait holds the next chunk for the response's Delay and Gate. It returns
// false when the client went away (the request's context ends when its
// connection closes) or the server is closing.
func (s *Server) wait(r *http.Request, resp Response) bool {
	if resp.Delay > 0 {
		t := time.NewTimer(resp.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return false
		case <-s.quit:
			return false
		}
	}
	if resp.Gate != nil {
		select {
		case <-resp.Gate:
		case <-r.Context().Done():
			return false
		case <-s.quit:
			return false
		}
	}
	return true
}

func (s *Server) disconnected(d Disconnect) {
	select {
	case <-s.quit:
		return // the server is closing: nobody left
	default:
	}
	select {
	case s.disconnects <- d:
	default:
		s.dropped.Add(1)
	}
}

type chunk struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *Usage   `json:"usage,omitempty"`
}

type choice struct {
	Index        int     `json:"index"`
	Delta        delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

type delta struct {
	Role      string         `json:"role,omitempty"`
	Content   string         `json:"content,omitempty"`
	ToolCalls []wireToolCall `json:"tool_calls,omitempty"`
}

// splitArgs cuts s into n fragments of about equal size (n at most len(s)),
// as servers stream arguments a few characters at a time.
func splitArgs(s string, n int) []string {
	if n <= 1 || len(s) <= 1 {
		return []string{s}
	}
	n = min(n, len(s))
	out := make([]string, 0, n)
	step := (len(s) + n - 1) / n
	for i := 0; i < len(s); i += step {
		out = append(out, s[i:min(len(s), i+step)])
	}
	return out
}

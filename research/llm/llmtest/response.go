package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Response scripts one answer of the fake. Build one with Stream, Error,
// HTML, Broken or StreamError and adjust it with the With... methods; the
// fields are exported for the cases those do not cover.
type Response struct {
	Status int         // HTTP status; 0 = 200
	Header http.Header // extra response headers (Retry-After, ...)

	// Error responses (Status >= 400).
	Body        string // sent as is
	ContentType string // default application/json

	// Streams (Status < 400).
	Chunks       []string        // text deltas, one SSE event each
	FinishReason string          // sent in a last choice chunk; "" = "stop"
	NoFinish     bool            // send no finish_reason chunk
	Usage        *Usage          // the final usage chunk; nil = DefaultUsage
	NoUsage      bool            // never send usage, even when the request asked for it
	Delay        time.Duration   // wait before each chunk (a slow model)
	Gate         <-chan struct{} // before each chunk, wait for one value (or the close) from Gate
	Break        bool            // after the chunks, cut the connection: no finish, no usage, no [DONE]
	CleanEOF     bool            // with Break: end the body properly instead of cutting the connection
	ErrorEvent   string          // after the chunks, send this JSON as a data line and end (a 200 stream that errs)
	// Forever repeats Chunks without end, ignoring max_tokens, until the
	// client goes away or the server closes: a route that never stops. With
	// ToolCalls, the first call's arguments never end instead.
	Forever bool

	// ToolCalls are streamed after Chunks, each as real servers send it
	// (index, id and name first, then its arguments in ArgChunks fragments);
	// the finish_reason is then "tool_calls".
	ToolCalls []ToolCall
	ArgChunks int // fragments per call's arguments; 0 = 1
}

// ToolCall scripts one tool call of a response. Arguments is sent as is,
// so a test can send malformed JSON; an empty ID gets one made up.
type ToolCall struct {
	ID, Name, Arguments string
}

// Call is a ToolCall of name with arguments.
func Call(name, arguments string) ToolCall { return ToolCall{Name: name, Arguments: arguments} }

// ToolCalls is an answer that calls tools (several: parallel calls), their
// arguments streamed in three fragments each, with an optional text before.
func ToolCalls(calls ...ToolCall) Response {
	return Response{ToolCalls: calls, ArgChunks: 3}
}

// WithText adds text deltas before the tool calls.
func (r Response) WithText(chunks ...string) Response { r.Chunks = chunks; return r }

// WithArgChunks streams each call's arguments in n fragments.
func (r Response) WithArgChunks(n int) Response { r.ArgChunks = n; return r }

// Usage is the usage object of the final chunk.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// DefaultUsage is sent when a Response has no Usage: 10 prompt tokens per
// message and one completion token per chunk. The figures differ from any
// local count on purpose, so tests can tell where usage came from.
func DefaultUsage(messages, chunks int) Usage {
	return Usage{PromptTokens: 10 * messages, CompletionTokens: chunks, TotalTokens: 10*messages + chunks}
}

// Stream is a normal streamed answer made of the given text deltas, ending
// with finish_reason "stop", usage (when asked for) and [DONE].
func Stream(chunks ...string) Response { return Response{Chunks: chunks} }

// Error is an HTTP error with an OpenAI-style JSON body.
func Error(status int, message string) Response {
	return Response{Status: status, Body: ErrorJSON(errorType(status), message)}
}

// HTML is an HTTP error with an HTML body, as a proxy sends (a 502 page).
func HTML(status int, body string) Response {
	return Response{Status: status, Body: body, ContentType: "text/html; charset=utf-8"}
}

// Endless streams chunks over and over and never finishes: a route that
// ignores max_tokens. Only the client closing the stream ends it.
func Endless(chunks ...string) Response { return Response{Chunks: chunks, Forever: true} }

// Broken streams chunks and then cuts the connection without [DONE].
func Broken(chunks ...string) Response { return Response{Chunks: chunks, Break: true} }

// StreamError is a 200 stream that sends chunks and then a data line holding
// an error object ({"error": {...}}), as some providers do when a stream
// fails after it started.
func StreamError(message string, chunks ...string) Response {
	return Response{Chunks: chunks, ErrorEvent: ErrorJSON("server_error", message)}
}

// ErrorJSON is an OpenAI-style error body.
func ErrorJSON(errType, message string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": message, "type": errType, "code": nil}})
	return string(b)
}

func errorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case status == http.StatusUnauthorized:
		return "invalid_api_key"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// WithUsage sets the usage sent in the final chunk.
func (r Response) WithUsage(prompt, completion int) Response {
	r.Usage = &Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
	return r
}

// WithoutUsage sends no usage, like servers that ignore stream_options.
func (r Response) WithoutUsage() Response { r.NoUsage = true; return r }

// WithDelay waits d before each chunk.
func (r Response) WithDelay(d time.Duration) Response { r.Delay = d; return r }

// WithGate makes each chunk wait for a value from gate (or its close), so a
// test decides exactly when each chunk goes out.
func (r Response) WithGate(gate <-chan struct{}) Response { r.Gate = gate; return r }

// WithRetryAfter sets the Retry-After header: seconds ("2") or an HTTP-date.
func (r Response) WithRetryAfter(v string) Response { return r.WithHeader("Retry-After", v) }

// WithHeader adds a response header.
func (r Response) WithHeader(key, value string) Response {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Add(key, value)
	r.Header = h
	return r
}

// WithFinish sets the finish_reason ("length", "content_filter", ...).
func (r Response) WithFinish(reason string) Response { r.FinishReason = reason; return r }

// WithoutFinish sends no finish_reason chunk (the stream still ends with [DONE]).
func (r Response) WithoutFinish() Response { r.NoFinish = true; return r }

// WithCleanEOF makes a Broken stream end its body properly (no [DONE]) rather
// than cut the connection: what a proxy that times out politely does.
func (r Response) WithCleanEOF() Response { r.CleanEOF = true; return r }

func (r Response) String() string {
	switch {
	case r.Status >= 400:
		return fmt.Sprintf("HTTP %d", r.Status)
	case r.Break:
		return fmt.Sprintf("broken stream after %d chunks", len(r.Chunks))
	case r.Forever:
		return fmt.Sprintf("endless stream of %d chunks", len(r.Chunks))
	case len(r.ToolCalls) > 0:
		return fmt.Sprintf("%d tool call(s)", len(r.ToolCalls))
	case r.ErrorEvent != "":
		return fmt.Sprintf("stream error after %d chunks", len(r.Chunks))
	}
	return fmt.Sprintf("stream of %d chunks", len(r.Chunks))
}

package llm

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// exchange is what the transport saw of one HTTP attempt. go-openai hides the
// response of a failed call (and never exposes Retry-After), so the wrapping
// transport fills this in; it travels to the transport in the request's
// context. RoundTrip runs on the caller's goroutine and the body is read there
// too, so no locking is needed.
type exchange struct {
	sent       bool // the request reached the transport
	status     int
	retryAfter string
	sawDone    bool // the body carried the "data: [DONE]" line
}

type exchangeKey struct{}

func withExchange(ctx context.Context, x *exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, x)
}

var _ http.RoundTripper = (*captureTransport)(nil)

// captureTransport records status and Retry-After for the exchange in the
// request's context, buffers error bodies (so the connection is released
// whatever go-openai does with them) and watches a stream for [DONE].
type captureTransport struct {
	base http.RoundTripper
}

// maxErrorBody bounds what is kept of an error page: enough for any JSON
// error, not a whole proxy's HTML.
const maxErrorBody = 64 << 10

func (t *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	x, _ := req.Context().Value(exchangeKey{}).(*exchange)
	if x != nil {
		x.sent = true
	}
	if req.Body != nil && req.Body != http.NoBody {
		// The request's JSON (the whole prompt, escaped) is not kept for the
		// stream's minutes: the transport gets a body that lets go of it
		// once sent, and a GetBody (for its own retries before the answer
		// starts) that lets go of it when RoundTrip returns.
		b := &sentBody{body: req.Body, get: req.GetBody}
		out := req.WithContext(req.Context()) // a shallow copy: the caller's request is not changed
		out.Body = b
		if req.GetBody != nil {
			out.GetBody = b.getBody
		}
		req = out
		defer b.forget()
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || x == nil {
		return resp, err
	}
	x.status = resp.StatusCode
	x.retryAfter = resp.Header.Get("Retry-After")
	if resp.StatusCode >= 400 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, nil
	}
	resp.Body = &doneWatcher{ReadCloser: resp.Body, x: x}
	return resp, nil
}

// sentBody is a request body that drops what it reads from once read to
// the end or closed.
type sentBody struct {
	mu   sync.Mutex
	body io.ReadCloser
	get  func() (io.ReadCloser, error)
}

var errBodyGone = errors.New("llm: request body already sent")

func (b *sentBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.body == nil {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.body.Close()
		b.body = nil
	}
	return n, err
}

func (b *sentBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.body == nil {
		return nil
	}
	err := b.body.Close()
	b.body = nil
	return err
}

func (b *sentBody) getBody() (io.ReadCloser, error) {
	b.mu.Lock()
	get := b.get
	b.mu.Unlock()
	if get == nil {
		return nil, errBodyGone
	}
	return get()
}

// forget drops GetBody: the answer started (or the attempt failed), so the
// transport will not send the request again.
func (b *sentBody) forget() {
	b.mu.Lock()
	b.get = nil
	b.mu.Unlock()
}

// doneWatcher notes whether a "data: [DONE]" line passed through. go-openai
// returns io.EOF both for [DONE] and for a connection that simply ended, and
// only the first is a complete stream. It looks at the start of each line
// only, so it costs one IndexByte per line.
type doneWatcher struct {
	io.ReadCloser
	x    *exchange
	line []byte // start of the current line, up to len("data: [DONE]")+some spaces
}

const doneLineMax = 24

func (w *doneWatcher) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	b := p[:n]
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		if room := doneLineMax - len(w.line); room > 0 {
			w.line = append(w.line, seg[:min(room, len(seg))]...)
		}
		if i < 0 {
			break
		}
		if isDoneLine(w.line) {
			w.x.sawDone = true
		}
		w.line = w.line[:0]
		b = b[i+1:]
	}
	return n, err
}

func isDoneLine(line []byte) bool {
	line = bytes.TrimSpace(line)
	rest, ok := bytes.CutPrefix(line, []byte("data:"))
	return ok && string(bytes.TrimSpace(rest)) == "[DONE]"
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP-date.
// A date in the past means "now" (0, true).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(secs) || secs < 0 {
			return 0, false
		}
		const longest = 24 * time.Hour // anything longer is "not today"; avoids overflow
		return min(time.Duration(min(secs, longest.Seconds())*float64(time.Second)), longest), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// defaultHTTPClient is shared by every Client without its own (serve and the
// command line use it), so connections are pooled.
var defaultHTTPClient = sync.OnceValue(func() *http.Client { return NewHTTPClient(nil) })

// NewHTTPClient is the client for providers: one pooled transport that
// speaks HTTP/2 to every https route whose server offers it (ALPN h2), so
// concurrent streams to one provider share a few connections instead of
// opening one each; plain http routes (a local server) get HTTP/1.1, with
// enough idle connections per host kept for a burst of runs to reuse. It
// has no overall timeout: a stream can rightly last minutes, and
// Client.IdleTimeout catches a stalled one. tlsConfig, when set, is the TLS
// configuration (a test's root CA); nil = the system's.
func NewHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     true, // needed with a custom DialContext or TLS config
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}}
}

package llm

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// streamingBase answers like net/http's transport: it sends the whole body,
// and the response it returns keeps the request it was given.
type streamingBase struct{}

func (streamingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, err := io.Copy(io.Discard, req.Body); err != nil {
		return nil, err
	}
	req.Body.Close()
	return &http.Response{StatusCode: 200, Request: req, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader("data: [DONE]\n\n"))}, nil
}

// TestRequestBodyNotKeptWhileStreaming: once the request is sent, its body
// (the prompt as JSON) is garbage while the answer is still being read,
// though the response (as go-openai keeps it) still points to the request.
func TestRequestBodyNotKeptWhileStreaming(t *testing.T) {
	ctx := withExchange(context.Background(), &exchange{})
	freed := make(chan struct{})
	resp := func() *http.Response {
		body := bytes.Repeat([]byte("x"), 64<<10)
		runtime.AddCleanup(&body[0], func(ch chan struct{}) { close(ch) }, freed)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://llm.test/v1/chat/completions", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&captureTransport{base: streamingBase{}}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}()
	// The caller's request is gone; the response, still open, keeps the
	// request the transport got. Its body must not be reachable from it.
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		runtime.GC()
		select {
		case <-freed:
			done = true
		case <-deadline:
			t.Fatal("the request body is still reachable while the answer streams")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if resp.Request == nil || resp.Request.Body == nil {
		t.Fatal("the response lost its request")
	}
	resp.Body.Close()
}

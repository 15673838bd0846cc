package testbed

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// The fake OpenAI-compatible API in another process, so that what a
// benchmark reads of this process's memory is the runs', not the fake's:
// the test binary re-run with envLLMChild set (its TestMain calls
// ServeLLMChild first). Every stream writes its first chunk at once and
// holds the rest until Release.
const (
	envLLMChild  = "FORGE_TESTBED_LLM_CHILD"  // "h1": plain http (HTTP/1.1); "h2": https with HTTP/2 offered
	envLLMChunks = "FORGE_TESTBED_LLM_CHUNKS" // text chunks per answer
)

// childHello is the child's first line on stdout.
type childHello struct {
	URL  string `json:"url"`
	Cert []byte `json:"cert,omitempty"` // DER, for h2
}

// ChildStats is what the child saw: requests, and how many came over HTTP/2.
type ChildStats struct {
	Requests  int   `json:"requests"`
	HTTP2     int   `json:"http2"`
	MaxActive int64 `json:"max_active"`
}

// ServeLLMChild serves the fake and exits when this process was started by
// StartLLMChild; otherwise it returns at once. Call it first in TestMain.
func ServeLLMChild() {
	mode := os.Getenv(envLLMChild)
	if mode == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv(envLLMChunks))
	chunks := make([]string, max(n, 1))
	for i := range chunks {
		chunks[i] = "tok "
	}
	var s *llmtest.Server
	hello := childHello{}
	if mode == "h2" {
		s = llmtest.NewTLSServer(nil)
		hello.Cert = s.Certificate().Raw
	} else {
		s = llmtest.NewServer(nil)
	}
	hello.URL = s.URL()
	var (
		mu       sync.Mutex
		gates    []chan struct{}
		released bool
	)
	s.SetResponder(func(llmtest.Request) (llmtest.Response, bool) {
		g := make(chan struct{}, 1)
		g <- struct{}{} // the first chunk goes at once
		mu.Lock()
		if released {
			close(g)
		} else {
			gates = append(gates, g)
		}
		mu.Unlock()
		return llmtest.Stream(chunks...).WithGate(g), true
	})
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(hello)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "release":
			mu.Lock()
			for _, g := range gates {
				close(g)
			}
			gates, released = nil, true
			mu.Unlock()
			_ = out.Encode("ok")
		case "hold":
			mu.Lock()
			released = false
			mu.Unlock()
			_ = out.Encode("ok")
		case "stats":
			st := ChildStats{MaxActive: s.MaxActive()}
			for _, r := range s.Requests() {
				st.Requests++
				if r.Proto == "HTTP/2.0" {
					st.HTTP2++
				}
			}
			_ = out.Encode(st)
		}
	}
	s.Close()
	os.Exit(0) // stdin closed: the parent is done
}

// LLMChild is the fake API running in a child process.
type LLMChild struct {
	URL    string
	Client *http.Client // the providers' client (llm.NewHTTPClient), trusting the child's certificate

	cmd *exec.Cmd
	in  io.WriteCloser
	out *json.Decoder
	mu  sync.Mutex
}

// StartLLMChild starts the fake in a child process ("h1" or "h2"), each
// answer chunks text chunks long; it stops when the test ends.
func StartLLMChild(tb testing.TB, mode string, chunks int) *LLMChild {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), envLLMChild+"="+mode, envLLMChunks+"="+strconv.Itoa(chunks))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &LLMChild{cmd: cmd, in: in, out: json.NewDecoder(stdout)}
	tb.Cleanup(c.stop)
	var hello childHello
	if err := c.out.Decode(&hello); err != nil {
		tb.Fatalf("fake LLM child: %v", err)
	}
	c.URL = hello.URL
	var conf *tls.Config
	if len(hello.Cert) > 0 {
		cert, err := x509.ParseCertificate(hello.Cert)
		if err != nil {
			tb.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		conf = &tls.Config{RootCAs: pool}
	}
	c.Client = llm.NewHTTPClient(conf)
	return c
}

// Pid is the child's process id.
func (c *LLMChild) Pid() int { return c.cmd.Process.Pid }

// Release lets every held stream (and every later one) finish.
func (c *LLMChild) Release() error { return c.do("release", nil) }

// Hold makes streams started from now on hold after their first chunk again.
func (c *LLMChild) Hold() error { return c.do("hold", nil) }

// Stats asks the child what it saw.
func (c *LLMChild) Stats() (ChildStats, error) {
	var st ChildStats
	err := c.do("stats", &st)
	return st, err
}

func (c *LLMChild) do(cmd string, reply any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		return err
	}
	if reply == nil {
		var ok string
		if err := c.out.Decode(&ok); err != nil || ok != "ok" {
			return fmt.Errorf("fake LLM child: %q, %v", ok, err)
		}
		return nil
	}
	return c.out.Decode(reply)
}

func (c *LLMChild) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// slimEvent keeps of an event what tests wait on: a benchmark reading the
// heap must not count every event's snapshot of its run.
type slimEvent struct {
	id, err, note string
	state         research.State
	done          int
	tokensOut     int64
	final         bool
}

func slimOf(ev research.Event) slimEvent {
	return slimEvent{id: strings.Clone(ev.Run.ID), err: strings.Clone(ev.Run.Error), note: strings.Clone(ev.Note),
		state: ev.Run.State, done: ev.Run.Done, tokensOut: ev.TokensOut, final: ev.Final}
}

func (s slimEvent) event() research.Event {
	return research.Event{Run: research.Run{ID: s.id, State: s.state, Error: s.err, Done: s.done},
		TokensOut: s.tokensOut, Final: s.final, Note: s.note}
}

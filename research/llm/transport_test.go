package llm_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"sync"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// TestProvidersClientSpeaksHTTP2: the providers' client (the one serve and
// the command line use) talks HTTP/2 to an https route that offers it; a
// plain http route (a local server) gets HTTP/1.1.
func TestProvidersClientSpeaksHTTP2(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		tls   bool
		proto string
	}{{"https", true, "HTTP/2.0"}, {"http", false, "HTTP/1.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var fake *llmtest.Server
			var conf *tls.Config
			if tc.tls {
				fake = llmtest.NewTLSServer(t)
				pool := x509.NewCertPool()
				pool.AddCert(fake.Certificate())
				conf = &tls.Config{RootCAs: pool}
			} else {
				fake = llmtest.NewServer(t)
			}
			c := &llm.Client{HTTPClient: llm.NewHTTPClient(conf)}
			routes := []llm.Route{{ID: "a", Kind: billing.RouteOfficial, Model: "m", BaseURL: fake.URL(), APIKey: "sk-test-a-0123456789abcd", Enabled: true}}
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					if _, err := c.Stream(context.Background(), routes, llm.Request{Messages: []llm.Message{{Role: llm.RoleUser, Content: "hi"}}}, nil); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for _, r := range fake.Requests() {
				if r.Proto != tc.proto {
					t.Fatalf("request %d came over %s, want %s", r.Index, r.Proto, tc.proto)
				}
			}
		})
	}
}

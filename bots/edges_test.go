package bots_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/web"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// viewText is everything a view shows: title, text, fields, buttons.
func viewText(v bots.View) string {
	var b strings.Builder
	b.WriteString(v.Title + "\n" + v.Text + "\n" + v.Notice + "\n")
	for _, f := range v.Fields {
		b.WriteString(f.Name + ": " + f.Value + "\n")
	}
	for _, row := range v.Buttons {
		for _, btn := range row {
			b.WriteString(btn.Label + "\n")
		}
	}
	if v.Report != nil {
		b.WriteString(bots.RenderReport(*v.Report))
	}
	return b.String()
}

// TestRouteErrorsReachChatAsClasses: routes that fail with a provider's
// text naming URLs, hosts and addresses (a refused key, a server error, a
// refused connection) end the run with a short class and a reference; the
// final message and the receipt page contain none of that text.
func TestRouteErrorsReachChatAsClasses(t *testing.T) {
	t.Parallel()
	leaky := "Incorrect API key for org-Zk42 at https://upstream.example.com:8443/v1; resolver 10.20.30.40:53"
	for _, tc := range []struct {
		name   string
		script llmtest.Response
		base   string // overrides the fake's URL (a refused connection)
		class  string
	}{
		{"refused key", llmtest.Error(401, leaky), "", "the route refused the key"},
		{"server error", llmtest.Error(503, leaky), "", "the model route had a server error"},
		{"connection refused", llmtest.Response{}, "http://127.0.0.1:1/v1", "the model route could not be reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newChat(t, testbed.Options{RoutesFor: func(url string) []llm.Route {
				if tc.base != "" {
					url = tc.base
				}
				return []llm.Route{{ID: "leaky", Kind: billing.RouteOfficial, Model: "gpt-leak", BaseURL: url, APIKey: "sk-test-leak9999",
					Price: billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}, Enabled: true}}
			}})
			c.b.LLM.SetDefault(tc.script)
			c.b.Fund(alice, billing.BucketCredit, billing.Micro)
			q := one(t, c.say(t, alice, "/research AAPL quick gpt-leak"))
			one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m1"))
			final := c.screen.waitFinal(t, "m1")
			text := viewText(final)
			if !strings.Contains(text, tc.class+" (ref ") {
				t.Fatalf("final does not name the class %q with a reference:\n%s", tc.class, text)
			}
			receipt := receiptURL(t, final)
			srv := httptest.NewServer(web.Handler(web.Deps{Receipts: c.b.Store}))
			defer srv.Close()
			var pages []string
			for _, accept := range []string{"text/html", "application/json"} {
				req, _ := http.NewRequest("GET", srv.URL+"/r/"+receipt[strings.LastIndex(receipt, "/")+1:], nil)
				req.Header.Set("Accept", accept)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("receipt %s: %d %s", accept, resp.StatusCode, body)
				}
				pages = append(pages, string(body))
			}
			for where, s := range map[string]string{"final": text, "receipt page": pages[0], "receipt json": pages[1]} {
				for _, bad := range []string{"upstream.example.com", "https://", "10.20.30.40", "127.0.0.1", "org-Zk42", "Incorrect API key", "dial tcp", "connection refused", "sk-test"} {
					if strings.Contains(s, bad) {
						t.Errorf("%s contains %q:\n%s", where, bad, s)
					}
				}
			}
		})
	}
}

func receiptURL(t *testing.T, v bots.View) string {
	t.Helper()
	for _, row := range v.Buttons {
		for _, b := range row {
			if b.Label == "Receipt" {
				return b.URL
			}
		}
	}
	t.Fatalf("no receipt button in %+v", v.Buttons)
	return ""
}

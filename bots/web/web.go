// Package web is forgebot's HTTP front door: receipt pages, health and
// metrics; the chat adapters' webhooks mount here too.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// ReceiptStore finds receipts by their public token.
type ReceiptStore interface {
	Receipt(ctx context.Context, publicID string) (billing.Receipt, error)
}

// Deps is what the handler serves from.
type Deps struct {
	Receipts ReceiptStore
	Metrics  *Metrics
	// MetricsToken, when set, serves GET /metrics on this handler behind
	// "Authorization: Bearer MetricsToken". Without it /metrics is not on
	// this handler at all: serve it on its own listener (Metrics.Handler).
	MetricsToken string
	Log          *slog.Logger
	// Mount adds more routes (chat webhooks) to the mux.
	Mount func(mux *http.ServeMux)
	// DB, when set, is pinged by /healthz: the only check whose failure
	// answers 503 (without the database nothing can be served).
	DB Pinger
	// Adapters, when set, reports each chat adapter's state for /healthz
	// ("up", or what it is waiting for); a platform being down degrades,
	// it does not fail the instance.
	Adapters func() map[string]string
}

// Pinger is a database that can say whether it answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// tokenRE matches receipt tokens (billing.NewPublicID): anything else is a
// 404 without a database read.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22,64}$`)

// Handler serves GET /r/{token}, GET /healthz and, with a token, GET /metrics.
func Handler(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		code, body := health(r.Context(), d)
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	})
	if d.Metrics != nil && d.MetricsToken != "" {
		mux.Handle("GET /metrics", bearer(d.Metrics.Handler(), d.MetricsToken))
	}
	mux.HandleFunc("GET /r/{token}", func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		if !tokenRE.MatchString(token) {
			http.NotFound(w, r)
			return
		}
		rc, err := d.Receipts.Receipt(r.Context(), token)
		if errors.Is(err, billing.ErrNotFound) {
			http.NotFound(w, r) // the same answer whether or not it ever existed
			return
		}
		if err != nil {
			d.Log.Error("read receipt", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "private, no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(receiptJSON(rc))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		if err := page.Execute(w, struct {
			R      billing.Receipt
			Notice string
		}{rc, research.Notice}); err != nil {
			d.Log.Error("render receipt", "err", err)
		}
	})
	if d.Mount != nil {
		d.Mount(mux)
	}
	return mux
}

// health is /healthz: "ok" when everything is up, "degraded" when a chat
// adapter is not (the instance still serves runs, receipts and the other
// platform), "down" with 503 when the database does not answer; then one
// line per component. No error text: states only.
func health(ctx context.Context, d Deps) (int, string) {
	code, status := http.StatusOK, "ok"
	var lines []string
	if d.DB != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := d.DB.Ping(ctx); err != nil {
			d.Log.Warn("healthz: database does not answer", "err", err)
			code, status = http.StatusServiceUnavailable, "down"
			lines = append(lines, "database: down")
		} else {
			lines = append(lines, "database: up")
		}
	}
	if d.Adapters != nil {
		states := d.Adapters()
		names := make([]string, 0, len(states))
		for n := range states {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			lines = append(lines, n+": "+states[n])
			if states[n] != "up" && status == "ok" {
				status = "degraded"
			}
		}
	}
	return code, strings.Join(append([]string{status}, lines...), "\n") + "\n"
}

func receiptJSON(rc billing.Receipt) map[string]any {
	return map[string]any{
		"id": rc.PublicID, "run_id": rc.RunID, "status": rc.Status, "model": rc.Model, "route": rc.Route,
		"route_kind": rc.RouteKind, "bucket": rc.Bucket, "tokens_in": rc.TokensIn, "tokens_out": rc.TokensOut,
		"tokens_in_source": rc.TokensInSource, "tokens_out_source": rc.TokensOutSource,
		"held_micros": rc.Held.Micros(), "captured_micros": rc.Captured.Micros(), "released_micros": rc.Released.Micros(),
		"purchase": rc.Purchase, "attempts": rc.Attempts, "notes": rc.Notes, "started_at": rc.StartedAt, "finished_at": rc.FinishedAt,
		"steps": receiptStepsJSON(rc.Steps),
	}
}

// receiptStepsJSON lists an agent run's steps with costs in micro-dollars.
func receiptStepsJSON(steps []billing.ReceiptStep) []map[string]any {
	out := []map[string]any{}
	for _, s := range steps {
		out = append(out, map[string]any{"step": s.Step, "kind": s.Kind, "label": s.Label, "tokens_in": s.TokensIn,
			"tokens_out": s.TokensOut, "cost_micros": s.Cost.Micros(), "took_ms": s.Took.Milliseconds(), "error": s.Error})
	}
	return out
}

var page = template.Must(template.New("receipt").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>forgebot receipt</title>
<style>body{font:15px system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}td{padding:.2em .8em .2em 0}th{text-align:left;padding-right:1em}</style>
</head><body>
<h1>Receipt</h1>
<table>
<tr><th>Run</th><td>{{.R.RunID}}</td></tr>
{{if .R.Purchase}}<tr><th>Bought</th><td>{{.R.Purchase}}</td></tr>{{end}}
<tr><th>Status</th><td>{{.R.Status}}</td></tr>
<tr><th>Model</th><td>{{.R.Model}} via {{.R.Route}} ({{.R.RouteKind}} route)</td></tr>
<tr><th>Paid from</th><td>{{.R.Bucket}}</td></tr>
<tr><th>Tokens in</th><td>{{.R.TokensIn}} ({{.R.TokensInSource}})</td></tr>
<tr><th>Tokens out</th><td>{{.R.TokensOut}} ({{.R.TokensOutSource}})</td></tr>
<tr><th>Held</th><td>{{.R.Held}}</td></tr>
<tr><th>Charged</th><td>{{.R.Captured}}</td></tr>
<tr><th>Released</th><td>{{.R.Released}}</td></tr>
<tr><th>Attempts</th><td>{{.R.Attempts}}</td></tr>
{{if not .R.StartedAt.IsZero}}<tr><th>Started</th><td>{{.R.StartedAt.UTC.Format "2006-01-02 15:04:05 UTC"}}</td></tr>{{end}}
{{if not .R.FinishedAt.IsZero}}<tr><th>Finished</th><td>{{.R.FinishedAt.UTC.Format "2006-01-02 15:04:05 UTC"}}</td></tr>{{end}}
{{if .R.Notes}}<tr><th>Notes</th><td>{{.R.Notes}}</td></tr>{{end}}
</table>
{{if .R.Steps}}<h2>Steps</h2>
<table>
<tr><th>Step</th><th>What</th><th>Tokens in / out</th><th>Cost</th><th>Time</th></tr>
{{range .R.Steps}}<tr><td>{{.Step}}</td><td>{{.Kind}}: {{.Label}}{{if .Error}} (error: {{.Error}}){{end}}</td><td>{{if eq .Kind "model"}}{{.TokensIn}} / {{.TokensOut}}{{end}}</td><td>{{if eq .Kind "model"}}{{.Cost}}{{end}}</td><td>{{.Took}}</td></tr>
{{end}}</table>{{end}}
<p><small>{{.Notice}}</small></p>
</body></html>
`))

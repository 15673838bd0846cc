package web

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
)

// Metrics are forgebot's Prometheus metrics, fed by observing run events.
type Metrics struct {
	reg       *prometheus.Registry
	runs      *prometheus.CounterVec
	tokens    *prometheus.CounterVec
	captured  *prometheus.CounterVec
	cancelLat prometheus.Histogram
	health    *healthCollector
}

// NewMetrics registers the metrics; health feeds the route gauges.
func NewMetrics(health *llm.Health) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "forgebot_runs_total",
			Help: "Runs that reached a final state, by state."}, []string{"state"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "forgebot_tokens_total",
			Help: "Tokens of settled runs, by direction."}, []string{"direction"}),
		captured: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "forgebot_captured_micros_total",
			Help: "Money captured from holds, in micro-USD, by bucket."}, []string{"bucket"}),
		cancelLat: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "forgebot_cancel_latency_seconds",
			Help: "From a cancel request to the run's settlement.", Buckets: []float64{.01, .05, .1, .2, .5, 1, 2, 5}}),
	}
	m.reg.MustRegister(m.runs, m.tokens, m.captured, m.cancelLat, collectors.NewGoCollector())
	// Every series exists from the start, at zero, so a dashboard or an
	// alert on a rate sees them before the first run.
	for _, st := range []research.State{research.Succeeded, research.Partial, research.Failed, research.Cancelled, research.Expired} {
		m.runs.WithLabelValues(string(st))
	}
	m.tokens.WithLabelValues("in")
	m.tokens.WithLabelValues("out")
	m.captured.WithLabelValues("credit")
	m.captured.WithLabelValues("routed")
	if health != nil {
		m.health = &healthCollector{h: health,
			rate: prometheus.NewDesc("forgebot_route_success_ratio", "Route success rate over its window.", []string{"route"}, nil),
			tps:  prometheus.NewDesc("forgebot_route_tokens_per_second", "Route output tokens per second.", []string{"route"}, nil),
			cool: prometheus.NewDesc("forgebot_route_cooling", "1 while the route cools down after failures.", []string{"route"}, nil)}
		m.reg.MustRegister(m.health)
	}
	return m
}

// KnowRoutes names the catalog's routes, so their series are shown (zero
// tokens per second, not cooling; success ratio 1 with no requests yet)
// before their first request.
func (m *Metrics) KnowRoutes(ids ...string) {
	if m.health == nil {
		return
	}
	m.health.mu.Lock()
	defer m.health.mu.Unlock()
	m.health.known = append(m.health.known, ids...)
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// Observe wraps a sink: every event is counted, then passed on.
func (m *Metrics) Observe(next research.Sink) research.Sink {
	return research.SinkFunc(func(ev research.Event) {
		m.observe(ev)
		if next != nil {
			next.Publish(ev)
		}
	})
}

func (m *Metrics) observe(ev research.Event) {
	r := ev.Run
	if !ev.Final {
		return
	}
	m.runs.WithLabelValues(string(r.State)).Inc()
	m.tokens.WithLabelValues("in").Add(float64(r.TokensIn))
	m.tokens.WithLabelValues("out").Add(float64(r.TokensOut))
	m.captured.WithLabelValues(string(r.Bucket)).Add(float64(r.Captured))
	if ev.CancelLatency > 0 {
		m.cancelLat.Observe(ev.CancelLatency.Seconds())
	}
}

type healthCollector struct {
	h               *llm.Health
	rate, tps, cool *prometheus.Desc
	mu              sync.Mutex
	known           []string
}

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rate
	ch <- c.tps
	ch <- c.cool
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	all := c.h.All()
	c.mu.Lock()
	for _, id := range c.known {
		if _, seen := all[id]; !seen {
			all[id] = llm.RouteStats{SuccessRate: 1}
		}
	}
	c.mu.Unlock()
	for route, st := range all {
		ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, st.SuccessRate, route)
		ch <- prometheus.MustNewConstMetric(c.tps, prometheus.GaugeValue, st.TokensPerSecond, route)
		cooling := 0.0
		if st.CoolingUntil.After(time.Now()) {
			cooling = 1
		}
		ch <- prometheus.MustNewConstMetric(c.cool, prometheus.GaugeValue, cooling, route)
	}
}

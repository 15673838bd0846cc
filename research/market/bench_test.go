package market

import (
	"testing"
	"time"
)

// BenchmarkComputeAll is what a run does per symbol before writing: indicators, the trader context against
// a benchmark, and the jump checks, on the 506-bar AAPL file.
func BenchmarkComputeAll(b *testing.B) {
	s := loadAAPL(b)
	bench := s
	bench.Symbol = "SPY"
	for b.Loop() {
		ind := Compute(s, 365*24*time.Hour)
		_ = ComputeContext(s, ind, &bench)
	}
}

// BenchmarkPanelChart renders the four-panel chart of one symbol at its default size (1080x1350).
func BenchmarkPanelChart(b *testing.B) {
	s := loadAAPL(b)
	for b.Loop() {
		if _, err := Chart([]Series{s}, ChartOptions{Window: 365 * 24 * time.Hour}); err != nil {
			b.Fatal(err)
		}
	}
}

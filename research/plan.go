package research

import (
	"fmt"
	"strings"
	"time"
)

// Depth is how thorough (and how costly) a run is.
type Depth string

const (
	Quick    Depth = "quick"
	Standard Depth = "standard"
	Deep     Depth = "deep"
	// Agent lets the model decide its steps: it calls market tools in a
	// loop, under a cap the user sets (agent.go).
	Agent Depth = "agent"
)

// ParseDepth accepts quick, standard, deep or agent.
func ParseDepth(s string) (Depth, error) {
	switch d := Depth(strings.ToLower(s)); d {
	case Quick, Standard, Deep, Agent:
		return d, nil
	}
	return "", fmt.Errorf("%w: depth %q: use quick, standard, deep or agent", ErrBadRequest, s)
}

// Plan is what a depth does: how many symbols it takes, how much history it
// reads, which stages it runs and how long it may take.
type Plan struct {
	Depth      Depth
	MaxSymbols int
	// Window is the analysis window the report talks about; Lookback adds the
	// history the indicators need before it (SMA 200 needs 200 bars).
	Window      time.Duration
	Lookback    time.Duration
	OutputLimit int // max output tokens per model call
	RuntimeLow  time.Duration
	RuntimeHigh time.Duration // also the run's job timeout
}

const indicatorLookback = 300 * 24 * time.Hour // 200 trading bars and room for holidays

// Plans lists every depth's plan.
var Plans = map[Depth]Plan{
	Quick:    {Depth: Quick, MaxSymbols: 3, Window: 183 * 24 * time.Hour, Lookback: 183*24*time.Hour + indicatorLookback, OutputLimit: 900, RuntimeLow: 5 * time.Second, RuntimeHigh: 2 * time.Minute},
	Standard: {Depth: Standard, MaxSymbols: 5, Window: 365 * 24 * time.Hour, Lookback: 365*24*time.Hour + indicatorLookback, OutputLimit: 700, RuntimeLow: 20 * time.Second, RuntimeHigh: 6 * time.Minute},
	Deep:     {Depth: Deep, MaxSymbols: 10, Window: 730 * 24 * time.Hour, Lookback: 730*24*time.Hour + indicatorLookback, OutputLimit: 900, RuntimeLow: 60 * time.Second, RuntimeHigh: 15 * time.Minute},
	// An agent run's steps are bounded by its AgentPlan; OutputLimit is its answer's.
	Agent: {Depth: Agent, MaxSymbols: 10, Window: 365 * 24 * time.Hour, Lookback: 365*24*time.Hour + indicatorLookback, OutputLimit: 900, RuntimeLow: 10 * time.Second, RuntimeHigh: 10 * time.Minute},
}

// LongestRun is the longest any depth's run may take: River's rescue of a
// job stuck in "running" must wait longer than this.
func LongestRun() time.Duration {
	var longest time.Duration
	for _, p := range Plans {
		longest = max(longest, p.RuntimeHigh)
	}
	return longest
}

// StageKind says what a stage does.
type StageKind string

const (
	StageFetch   StageKind = "fetch"   // market data for every symbol
	StageCompute StageKind = "compute" // indicators and the chart
	StageLLM     StageKind = "llm"     // one model call
)

// Stage is one step of a run.
type Stage struct {
	Name   string
	Kind   StageKind
	Symbol string // the symbol an analysis stage is about, if any
	Role   string // for model calls: report, analysis, bull, bear, risk, synthesis
}

// Stages lists a plan's stages for the given symbols.
func (p Plan) Stages(symbols []string) []Stage {
	out := []Stage{{Name: "fetch market data", Kind: StageFetch}, {Name: "compute indicators", Kind: StageCompute}}
	switch p.Depth {
	case Quick:
		out = append(out, Stage{Name: "write the report", Kind: StageLLM, Role: "report"})
	case Standard, Deep:
		for _, s := range symbols {
			out = append(out, Stage{Name: "analyse " + s, Kind: StageLLM, Symbol: s, Role: "analysis"})
		}
		if p.Depth == Deep {
			out = append(out,
				Stage{Name: "bull case", Kind: StageLLM, Role: "bull"},
				Stage{Name: "bear case", Kind: StageLLM, Role: "bear"},
				Stage{Name: "risk review", Kind: StageLLM, Role: "risk"})
		}
		out = append(out, Stage{Name: "synthesis", Kind: StageLLM, Role: "synthesis"})
	}
	return out
}

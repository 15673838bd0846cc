package scheduler

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Command is a parsed "/schedule add ..." (or a friendly form).
type Command struct {
	Spec    string
	Zone    string
	Kind    research.Kind
	Symbols []string
	List    string
	Depth   research.Depth
	Cap     billing.Money // 0 = no cap; an agent run's cap
	// Question is an ask's; AskAt an agent run's ask-to-continue threshold
	// (0: never ask, the default for a schedule: nobody may be there to
	// answer, so it wraps up at its cap).
	Question string
	AskAt    int
}

var days = map[string]string{"daily": "*", "weekdays": "1-5", "weekends": "0,6",
	"mon": "1", "tue": "2", "wed": "3", "thu": "4", "fri": "5", "sat": "6", "sun": "0"}

// ParseCommand reads the words after "/schedule add", or a friendly form
// ("daily 09:00 scan us-megacaps", "weekdays 16:30 research NVDA AMD").
// Options anywhere after the spec: a depth, tz:Area/City, cap:1.50, and for
// agent runs ask:on or ask:NN (ask to continue; scheduled agent runs wrap
// up at their cap without asking unless told). An ask takes its question
// in double quotes: daily 09:00 ask "morning brief on my watchlist" cap:0.20.
func ParseCommand(words []string) (Command, error) {
	var c Command
	if len(words) == 0 {
		return c, fmt.Errorf("%w: say when, e.g. /schedule daily 09:00 scan us-megacaps", ErrBadSpec)
	}
	rest := words
	if dow, ok := days[strings.ToLower(words[0])]; ok {
		if len(words) < 2 {
			return c, fmt.Errorf("%w: say the time, e.g. %s 09:00", ErrBadSpec, words[0])
		}
		var h, m int
		if n, err := fmt.Sscanf(words[1], "%d:%d", &h, &m); n != 2 || err != nil || h < 0 || h > 23 || m < 0 || m > 59 || len(words[1]) > 5 {
			return c, fmt.Errorf("%w: %q is not a time like 09:00", ErrBadSpec, words[1])
		}
		c.Spec, rest = fmt.Sprintf("%d %d * * %s", m, h, dow), words[2:]
	} else if strings.EqualFold(words[0], "@every") && len(words) > 1 {
		c.Spec, rest = "@every "+words[1], words[2:]
	} else {
		c.Spec, rest = words[0], words[1:]
	}
	var args []string
	for _, w := range rest {
		lw := strings.ToLower(w)
		switch {
		case strings.HasPrefix(lw, "tz:"):
			c.Zone = w[3:]
		case strings.HasPrefix(lw, "ask:"):
			switch v := strings.TrimSuffix(lw[4:], "%"); v {
			case "off", "no":
				c.AskAt = 0
			case "on", "yes":
				c.AskAt = research.DefaultAskAt
			default:
				n, err := strconv.Atoi(v)
				if err != nil || n < 10 || n > 95 {
					return c, fmt.Errorf("%w: ask:%s: use ask:on, ask:off or a percent of the cap like ask:80", ErrBadSpec, w[4:])
				}
				c.AskAt = n
			}
		case strings.HasPrefix(lw, "cap:"):
			m, err := billing.ParseMoney(w[4:])
			if err != nil || m <= 0 {
				return c, fmt.Errorf("%w: cap:%s is not an amount like cap:0.50", ErrBadSpec, w[4:])
			}
			c.Cap = m
		default:
			if d, err := research.ParseDepth(w); err == nil {
				c.Depth = d
				continue
			}
			args = append(args, w)
		}
	}
	if c.Depth == "" {
		c.Depth = research.Quick
	}
	if len(args) < 2 {
		return c, fmt.Errorf("%w: say what to run: research SYMBOLS, scan WATCHLIST or ask \"QUESTION\"", ErrBadSpec)
	}
	switch strings.ToLower(args[0]) {
	case "ask":
		c.Kind, c.Depth, c.Question = research.KindAsk, research.Agent, strings.TrimSpace(strings.Join(args[1:], " "))
	case "research":
		c.Kind = research.KindResearch
		for _, a := range args[1:] {
			for _, s := range strings.Split(a, ",") {
				if s != "" {
					c.Symbols = append(c.Symbols, s)
				}
			}
		}
	case "scan":
		if len(args) != 2 {
			return c, fmt.Errorf("%w: scan takes one watchlist", ErrBadSpec)
		}
		c.Kind, c.List = research.KindScan, args[1]
	default:
		return c, fmt.Errorf("%w: say research SYMBOLS, scan WATCHLIST or ask \"QUESTION\", not %q", ErrBadSpec, args[0])
	}
	if c.AskAt != 0 && c.Depth != research.Agent {
		return c, fmt.Errorf("%w: ask: is for agent runs (ask \"QUESTION\", or the agent depth)", ErrBadSpec)
	}
	return c, nil
}

// Tokenize splits a command line on spaces, keeping "double quoted" parts whole.
func Tokenize(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, started := false, false
	for _, r := range s {
		switch {
		case r == '"' || r == '“' || r == '”':
			quoted, started = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if started {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		out = append(out, cur.String())
	}
	return out
}

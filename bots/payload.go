package bots

import (
	"fmt"
	"regexp"
	"strings"
)

// Button payloads are "<kind>:<id>:<action>": kind q (a quote) or r (a run),
// (a schedule: s), the engine's opaque id, and one action from a fixed list. They are untrusted:
// parse checks their shape, the conversation then looks the id up and checks
// that the presser may act. At most 60 bytes, within Telegram's 64.
type payload struct {
	kind   byte
	id     string
	action string
}

var (
	idRE            = regexp.MustCompile(`^[qrs][A-Za-z0-9_-]{16}$`)
	quoteActions    = []string{"confirm", "decline", "quick", "standard", "deep", "agent", "consent", "noconsent"}
	runActions      = []string{"cancel", "pause", "resume", "more", "wrapup"}
	scheduleActions = []string{"confirm", "decline"}
)

func (p payload) String() string { return fmt.Sprintf("%c:%s:%s", p.kind, p.id, p.action) }

func quoteButton(id, action string) string { return payload{'q', id, action}.String() }
func runButton(id, action string) string   { return payload{'r', id, action}.String() }
func scheduleButton(id, action string) string {
	return payload{'s', id, action}.String()
}

func parsePayload(s string) (payload, bool) {
	if len(s) > 60 {
		return payload{}, false
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 || len(parts[0]) != 1 || !idRE.MatchString(parts[1]) || parts[0][0] != parts[1][0] {
		return payload{}, false
	}
	p := payload{kind: parts[0][0], id: parts[1], action: parts[2]}
	actions := map[byte][]string{'q': quoteActions, 'r': runActions, 's': scheduleActions}[p.kind]
	for _, a := range actions {
		if a == p.action {
			return p, true
		}
	}
	return payload{}, false
}

package bots

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/research"
)

// TestChatLimitersBounded: an outbox that sent to more chats than maxChats
// keeps at most maxChats per-chat limiters; a chat still waiting for its
// budget keeps its limiter (and its retry-after), so pruning loses nothing.
func TestChatLimitersBounded(t *testing.T) {
	t.Parallel()
	o := NewOutbox(nil)
	o.Register("p", nil, Limits{PerChat: rate.Every(time.Second), PerChatBurst: 1})
	p := o.platforms["p"]
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i := range maxChats + 500 {
		o.enqueue(msgKey{"p", fmt.Sprintf("c%d", i), "m"}, &item{dest: research.Destination{Platform: "p", ChatID: fmt.Sprintf("c%d", i), MessageID: "m"}})
		if it, _, _, _ := o.next(now); it == nil {
			t.Fatalf("chat %d got no send", i)
		}
		now = now.Add(100 * time.Millisecond) // chats more than 1 s back have a full budget again
		if i == maxChats+400 {
			p.blocked["c400"] = now.Add(time.Hour) // a chat told to wait
			p.chats["c400"] = rate.NewLimiter(rate.Every(time.Second), 1)
			p.chats["c400"].AllowN(now, 1)
		}
	}
	if n := len(p.chats); n > maxChats {
		t.Fatalf("%d chat limiters kept, want at most %d", n, maxChats)
	}
	last := fmt.Sprintf("c%d", maxChats+499)
	if p.chats[last] == nil {
		t.Fatal("the newest chat's limiter, its budget spent, was dropped")
	}
	if _, ok := p.blocked["c400"]; !ok {
		t.Fatal("a chat's retry-after that has not passed was dropped")
	}
}

// downMessages is a message store that does not answer.
type downMessages struct{ MessageStore }

func (downMessages) RenewMessages(context.Context, string, time.Time) error {
	return errors.New("connect: connection refused")
}

func (downMessages) ClaimMessages(context.Context, string, []string, time.Time, time.Time, int) ([]StoredMessage, error) {
	return nil, errors.New("connect: connection refused")
}

// TestReclaimLogsWithBackoff: with the database down, the outbox's claim
// loop logs its 1st, 2nd, 4th... failure in a row, not every tick's.
func TestReclaimLogsWithBackoff(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	o := NewOutbox(slog.New(slog.NewTextHandler(&out, nil)))
	o.Store = downMessages{}
	o.Register("p", nil, Limits{})
	for range 100 {
		o.Reclaim(t.Context())
	}
	if n := strings.Count(out.String(), "level=WARN"); n != 7 {
		t.Fatalf("%d lines for 100 failures in a row, want 7 (1st, 2nd, 4th ... 64th):\n%s", n, out.String())
	}
}

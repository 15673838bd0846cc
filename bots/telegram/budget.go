package telegram

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/bots"
)

// Limits are the outbox's budgets for Telegram: 30 calls a second overall
// (Telegram's bot FAQ), and per chat only a loose ceiling. Telegram's per-chat
// limits (about one message a second, 20 a minute in a group; edits are
// assumed to count) are kept by the adapter's chat budget below, because the
// outbox cannot tell groups from private chats, cannot keep room for final
// messages, and spends its per-chat tokens on every attempt, including the
// ones the adapter defers: at one a second it would hold a final back by up
// to a second after each deferred progress edit.
var Limits = bots.Limits{PerChat: rate.Limit(10), PerChatBurst: 10, Global: rate.Limit(30), GlobalBurst: 10}

// The adapter's chat budget models Telegram's limits for every call that
// posts or edits a message, whatever sent it:
//   - per chat, a token bucket of ChatBurst calls refilled at
//     PrivatePerSecond (Telegram: "about one message a second"; the burst
//     is our assumption);
//   - per group (a chat id below zero), at most GroupPerMinute calls in any
//     60 seconds (Telegram: 20 a minute);
//   - overall, GlobalPerSecond (Telegram: "about 30 messages a second").
//
// Every call waits for it, so that Telegram never has to say 429. Replies to
// a user wait in their handler (a second or so; in a group that used its
// minute, until the minute allows). The outbox's edits are told to come back
// with a short *bots.RetryAfterError, the outbox keeping only the latest
// view meanwhile. Progress edits go only when they leave a token and
// groupReserve calls of the minute for replies and finals, and in groups at
// most one per groupProgressEvery, so that a group's progress is smooth
// rather than 20 edits then a silent minute. A final message and its
// attachments (more parts, the document, the chart: sent in the background,
// as replies to it) go on any token.
const (
	PrivatePerSecond = 1
	ChatBurst        = 3
	GroupPerMinute   = 20
	GlobalPerSecond  = 30

	groupReserve       = 5
	groupProgressEvery = 4 * time.Second
	maxReplyWait       = 5 * time.Second // longest retry_after a reply waits out
	// deferStep caps how long the outbox is told to wait, because that wait
	// blocks the whole chat, its final messages included.
	deferStep = 250 * time.Millisecond
	// margin absorbs the delay between counting a call here and Telegram
	// counting it on arrival.
	margin = 100 * time.Millisecond
)

type chatBudget struct {
	bucket   *rate.Limiter
	window   []time.Time   // groups: calls in the last minute, oldest first
	progress *rate.Limiter // groups: progress pacing
}

// budget is the chat budgets of one bot.
type budget struct {
	mu     sync.Mutex
	now    func() time.Time
	chats  map[int64]*chatBudget
	global *rate.Limiter

	// shared, when set, keeps the same budget in the database for every
	// instance of the bot (keys under prefix); the maps above are unused.
	shared bots.RateStore
	prefix string
	log    *slog.Logger
}

func newBudget() *budget {
	return &budget{now: time.Now, chats: map[int64]*chatBudget{}, global: rate.NewLimiter(GlobalPerSecond, GlobalPerSecond)}
}

// newSharedBudget is a budget every instance of bot shares through rates
// (nil: this process's own).
func newSharedBudget(rates bots.RateStore, bot string, log *slog.Logger) *budget {
	b := newBudget()
	if rates != nil {
		b.shared, b.prefix, b.log = rates, "tg:"+bot+":", log
	}
	return b
}

// botID is the bot's id, the token's part before the colon: it names the
// bot's budget in the shared store without the secret.
func botID(token string) string {
	id, _, _ := strings.Cut(token, ":")
	return id
}

// sharedWait is how long a caller is told to wait when the shared budget
// cannot be read (the database is away): calls slow down rather than risk
// Telegram's 429s, and they go on when it is back.
const sharedWait = time.Second

// tryShared is try on the shared budget: the same rules, kept in the
// database and applied to every instance's calls together.
func (b *budget) tryShared(chat int64, keep float64, keepWindow int, progress bool) (time.Duration, bool) {
	id := strconv.FormatInt(chat, 10)
	rules := []bots.RateRule{
		{Key: b.prefix + "chat:" + id, Every: time.Second / PrivatePerSecond, Burst: ChatBurst, Need: 1 + keep + margin.Seconds()*PrivatePerSecond},
		{Key: b.prefix + "global", Every: time.Second / GlobalPerSecond, Burst: GlobalPerSecond, Need: 1},
	}
	if chat < 0 {
		rules = append(rules, bots.RateRule{Key: b.prefix + "group:" + id, Window: time.Minute, Max: GroupPerMinute - keepWindow, Margin: margin})
		if progress {
			rules = append(rules, bots.RateRule{Key: b.prefix + "progress:" + id, Every: groupProgressEvery, Burst: 1, Need: 1})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wait, ok, err := b.shared.TakeRate(ctx, b.now(), rules)
	if err != nil {
		b.log.Warn("telegram: shared chat budget unavailable; waiting", "chat_id", chat, "err", err)
		return sharedWait, false
	}
	return wait, ok
}

func (b *budget) get(chat int64, now time.Time) *chatBudget {
	c := b.chats[chat]
	if c != nil {
		return c
	}
	if len(b.chats) >= 10000 {
		for id, old := range b.chats {
			if old.bucket.TokensAt(now) >= ChatBurst && old.count(now) == 0 {
				delete(b.chats, id) // idle: a fresh budget is the same
			}
		}
	}
	c = &chatBudget{bucket: rate.NewLimiter(PrivatePerSecond, ChatBurst)}
	if chat < 0 {
		c.progress = rate.NewLimiter(rate.Every(groupProgressEvery), 1)
	}
	b.chats[chat] = c
	return c
}

// count is the calls of the last minute (groups only).
func (c *chatBudget) count(now time.Time) int {
	i := 0
	for i < len(c.window) && now.Sub(c.window[i]) >= time.Minute {
		i++
	}
	c.window = c.window[i:]
	return len(c.window)
}

func (c *chatBudget) record(now time.Time, progress bool) {
	c.bucket.ReserveN(now, 1)
	if c.progress != nil {
		c.window = append(c.window, now)
		if progress {
			c.progress.ReserveN(now, 1)
		}
	}
}

// try records a call if the budget allows it now, leaving keep tokens and
// keepWindow calls of the group's minute; else it says how long to wait.
func (b *budget) try(chat int64, keep float64, keepWindow int, progress bool) (time.Duration, bool) {
	if b.shared != nil {
		return b.tryShared(chat, keep, keepWindow, progress)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	c := b.get(chat, now)
	need := 1 + keep + margin.Seconds()*float64(c.bucket.Limit())
	var wait time.Duration
	if tok := c.bucket.TokensAt(now); tok < need {
		wait = time.Duration((need - tok) / float64(c.bucket.Limit()) * float64(time.Second))
	}
	if c.progress != nil {
		room := GroupPerMinute - keepWindow
		if n := c.count(now); n >= room {
			wait = max(wait, c.window[n-room].Add(time.Minute+margin).Sub(now))
		}
		if tok := c.progress.TokensAt(now); progress && tok < 1 {
			wait = max(wait, time.Duration((1-tok)/float64(c.progress.Limit())*float64(time.Second)))
		}
	}
	if tok := b.global.TokensAt(now); tok < 1 {
		wait = max(wait, time.Duration((1-tok)/float64(b.global.Limit())*float64(time.Second)))
	}
	if wait > 0 {
		return max(wait, time.Millisecond), false
	}
	c.record(now, progress)
	b.global.ReserveN(now, 1)
	return 0, true
}

// progressEdit asks for a progress edit.
func (b *budget) progressEdit(chat int64) (time.Duration, bool) {
	return b.try(chat, 1, groupReserve, true)
}

// final asks for the first part of a final message.
func (b *budget) final(chat int64) (time.Duration, bool) { return b.try(chat, 0, 0, false) }

// part asks for a further part of a final message. A part leaves a token
// in the chat's bucket: attachments follow a second apart rather than in
// one burst behind the final, whose calls a loaded machine can deliver to
// Telegram closer together than they were counted here.
func (b *budget) part(chat int64) (time.Duration, bool) { return b.try(chat, 1, 0, false) }

// wait waits for the budget of a reply, as long as ctx allows, and records
// the call; it reports false if ctx ended first.
func (b *budget) wait(ctx context.Context, chat int64) bool {
	for {
		d, ok := b.try(chat, 0, 0, false)
		if ok {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

package bots

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/research"
)

// Sender delivers views on one platform.
type Sender interface {
	// Send posts a new message and returns its id.
	Send(ctx context.Context, d research.Destination, v View) (string, error)
	// Edit replaces message d.MessageID with v. A "not modified" answer is
	// success. A final view may also post its attachments.
	Edit(ctx context.Context, d research.Destination, v View) error
}

// RetryAfterError is what a Sender returns when the platform says to wait.
type RetryAfterError struct{ Wait time.Duration }

func (e *RetryAfterError) Error() string { return fmt.Sprintf("rate limited: retry after %s", e.Wait) }

// Limits are a platform's rate budgets for edits and messages.
type Limits struct {
	PerChat      rate.Limit // sustained per chat
	PerChatBurst int
	Global       rate.Limit // sustained over all chats
	GlobalBurst  int
}

// Outbox delivers views to chat messages: per message only the latest view
// is kept, final views go first and are never dropped, every send waits for
// its chat's and its platform's budget, and a platform's retry-after blocks
// that chat until it passes.
type Outbox struct {
	Log *slog.Logger

	mu        sync.Mutex
	platforms map[string]*platform
	pending   map[msgKey]*item
	posted    map[msgKey]string    // message ids of views sent as new messages, by Ref
	finished  map[msgKey]time.Time // messages whose final view was taken for delivery
	seq       uint64
	wake      chan struct{}
	idle      chan struct{} // closed while nothing is pending

	sent, limited, coalesced, failed atomic.Int64
}

type platform struct {
	sender  Sender
	limits  Limits
	global  *rate.Limiter
	chats   map[string]*rate.Limiter
	blocked map[string]time.Time
}

type msgKey struct{ platform, chat, message string }

// keyOf names the message a destination means: its id, or its Ref until
// the first send gave it one.
func keyOf(d research.Destination) msgKey {
	if d.MessageID == "" && d.Ref != "" {
		return msgKey{d.Platform, d.ChatID, "ref:" + d.Ref}
	}
	return msgKey{d.Platform, d.ChatID, d.MessageID}
}

type item struct {
	dest     research.Destination
	view     View
	seq      uint64 // order of first submission
	attempts int
}

// NewOutbox makes an empty outbox; Register platforms, then Run it.
func NewOutbox(log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idle := make(chan struct{})
	close(idle)
	return &Outbox{Log: log, platforms: map[string]*platform{}, pending: map[msgKey]*item{}, posted: map[msgKey]string{},
		finished: map[msgKey]time.Time{}, wake: make(chan struct{}, 1), idle: idle}
}

// Register adds a platform's sender and limits.
func (o *Outbox) Register(name string, s Sender, l Limits) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if l.Global == 0 {
		l.Global, l.GlobalBurst = rate.Inf, 1
	}
	if l.PerChat == 0 {
		l.PerChat, l.PerChatBurst = rate.Inf, 1
	}
	o.platforms[name] = &platform{sender: s, limits: l, global: rate.NewLimiter(l.Global, max(l.GlobalBurst, 1)),
		chats: map[string]*rate.Limiter{}, blocked: map[string]time.Time{}}
}

// Serves reports whether a platform's sender is registered.
func (o *Outbox) Serves(platform string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.platforms[platform]
	return ok
}

// Submit queues v for the message at d. A newer view of the same message
// replaces an older one not yet sent; a final view is never replaced by a
// non-final one, and a message whose final view has gone out (or is going
// out) takes no more progress: a late event cannot overwrite the result.
func (o *Outbox) Submit(d research.Destination, v View) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.platforms[d.Platform]; !ok {
		o.Log.Warn("outbox: no sender for platform", "platform", d.Platform)
		return
	}
	k := keyOf(d)
	if _, done := o.finished[k]; done && !v.Final {
		o.coalesced.Add(1)
		return
	}
	if old, ok := o.pending[k]; ok {
		if old.view.Final && !v.Final {
			return
		}
		o.coalesced.Add(1)
		old.dest, old.view = d, v
	} else {
		select {
		case <-o.idle: // idle until now: Flush callers wait on a new channel
			o.idle = make(chan struct{})
		default: // a delivery is in flight; its end closes the current one
		}
		o.seq++
		o.pending[k] = &item{dest: d, view: v, seq: o.seq}
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Stats reports deliveries: sent, answered with a rate limit, replaced before
// sending, and given up.
func (o *Outbox) Stats() (sent, limited, coalesced, failed int64) {
	return o.sent.Load(), o.limited.Load(), o.coalesced.Load(), o.failed.Load()
}

// Flush waits until nothing is pending or ctx ends.
func (o *Outbox) Flush(ctx context.Context) error {
	o.mu.Lock()
	idle := o.idle
	o.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run delivers until ctx ends.
func (o *Outbox) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		it, k, p, wait := o.next(time.Now())
		if it == nil {
			if wait <= 0 {
				wait = time.Hour
			}
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			case <-timer.C:
			}
			continue
		}
		o.deliver(ctx, it, k, p)
	}
}

// next picks the next item whose budgets allow sending now: finals first,
// then oldest first. With none ready it returns how long until one may be.
func (o *Outbox) next(now time.Time) (*item, msgKey, *platform, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var (
		best    *item
		bestKey msgKey
		soonest time.Duration
	)
	for k, it := range o.pending {
		p := o.platforms[k.platform]
		if until := p.blocked[k.chat]; now.Before(until) {
			soonest = minPositive(soonest, until.Sub(now))
			continue
		}
		if best == nil || (it.view.Final && !best.view.Final) || (it.view.Final == best.view.Final && it.seq < best.seq) {
			best, bestKey = it, k
		}
	}
	if best == nil {
		return nil, msgKey{}, nil, soonest
	}
	p := o.platforms[bestKey.platform]
	chat := p.chats[bestKey.chat]
	if chat == nil {
		chat = rate.NewLimiter(p.limits.PerChat, max(p.limits.PerChatBurst, 1))
		p.chats[bestKey.chat] = chat
	}
	rc, rg := chat.ReserveN(now, 1), p.global.ReserveN(now, 1)
	if d := max(rc.DelayFrom(now), rg.DelayFrom(now)); d > 0 {
		rc.CancelAt(now)
		rg.CancelAt(now)
		return nil, msgKey{}, nil, minPositive(soonest, d)
	}
	delete(o.pending, bestKey)
	if best.view.Final {
		o.markFinished(bestKey, now)
	}
	return best, bestKey, p, 0
}

// finishedFor is how long a finished message keeps refusing progress views;
// events arrive late by seconds, not hours.
const finishedFor = time.Hour

// markFinished records that k's final view is on its way; o.mu is held.
func (o *Outbox) markFinished(k msgKey, now time.Time) {
	o.finished[k] = now
	if len(o.finished)%1024 == 0 {
		for fk, at := range o.finished {
			if now.Sub(at) > finishedFor {
				delete(o.finished, fk)
			}
		}
	}
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

func (o *Outbox) deliver(ctx context.Context, it *item, k msgKey, p *platform) {
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	d := it.dest
	o.mu.Lock()
	if id, ok := o.posted[k]; ok && d.MessageID == "" {
		d.MessageID = id
	}
	o.mu.Unlock()
	if d.MessageID == "" {
		var id string
		id, err = p.sender.Send(sendCtx, d, it.view)
		if err == nil && d.Ref != "" && id != "" && !it.view.Final {
			o.mu.Lock()
			o.posted[k] = id
			o.mu.Unlock()
		}
	} else {
		err = p.sender.Edit(sendCtx, d, it.view)
	}
	if it.view.Final {
		o.mu.Lock()
		delete(o.posted, k)
		o.mu.Unlock()
	}
	var ra *RetryAfterError
	switch {
	case err == nil:
		o.sent.Add(1)
	case errors.As(err, &ra):
		o.limited.Add(1)
		o.mu.Lock()
		p.blocked[k.chat] = time.Now().Add(ra.Wait)
		o.mu.Unlock()
		o.requeue(k, it)
	default:
		it.attempts++
		switch {
		case it.view.Final && it.attempts < 4:
			o.Log.Warn("outbox: final message failed, retrying", "platform", k.platform, "chat_id", k.chat, "err", err)
			o.mu.Lock()
			p.blocked[k.chat] = time.Now().Add(time.Duration(it.attempts) * time.Second)
			o.mu.Unlock()
			o.requeue(k, it)
		case it.view.Final && it.attempts == 4 && it.dest.MessageID != "":
			// The message cannot be edited (deleted, or refused for good):
			// the result goes out once more as a new message in the chat.
			o.Log.Warn("outbox: final edit keeps failing, posting it as a new message", "platform", k.platform, "chat_id", k.chat, "err", err)
			// Its own key: no other view (a notice, another run's final)
			// can take its place in the queue.
			it.dest.MessageID, it.dest.Ref = "", "final:"+k.message
			o.requeue(keyOf(it.dest), it)
		default:
			o.failed.Add(1)
			o.Log.Error("outbox: delivery failed", "platform", k.platform, "chat_id", k.chat, "final", it.view.Final, "err", err)
		}
	}
	o.mu.Lock()
	if len(o.pending) == 0 {
		select {
		case <-o.idle:
		default:
			close(o.idle)
		}
	}
	o.mu.Unlock()
}

// requeue puts an unsent item back unless a newer view took its place; a
// final view always comes back in place of a non-final one.
func (o *Outbox) requeue(k msgKey, it *item) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur, newer := o.pending[k]; !newer || (it.view.Final && !cur.view.Final) {
		o.pending[k] = it // o.idle is still open: deliver closes it after this
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

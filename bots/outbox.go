package bots

import (
	"context"
	"encoding/json"
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
	// Shared keeps these budgets for every instance together in the
	// outbox's Rates (when set): two instances editing runs in one channel
	// spend one channel's budget. The platform's own limits apply to the
	// bot, not to each instance.
	Shared bool
}

// Outbox delivers views to chat messages: per message only the latest view
// is kept, final views go first and are never dropped, every send waits for
// its chat's and its platform's budget, and a platform's retry-after blocks
// that chat until it passes.
type Outbox struct {
	Log *slog.Logger
	// Store, when set, keeps final views (and notices) until they are
	// delivered, so neither a crash nor a platform outage loses them, and
	// orders each run's views across instances (see MessageStore). Set it,
	// and the clock, before Run.
	Store MessageStore
	// Now and After are the outbox's clock (tests inject one); default the
	// real time.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// FinalFor is how long a final view's edit is retried before the result
	// is posted as a new message (retried as long again); default 1 h.
	FinalFor time.Duration
	// Rates, when set, keeps the budgets of platforms registered with
	// Limits.Shared in the database every instance shares.
	Rates RateStore
	owner string // names this outbox in the store's claims

	mu        sync.Mutex
	platforms map[string]*platform
	pending   map[msgKey]*item
	posted    map[msgKey]string    // message ids of views sent as new messages, by Ref
	finished  map[msgKey]time.Time // messages whose final view was taken for delivery
	seq       uint64
	wake      chan struct{}
	idle      chan struct{} // closed while nothing is pending

	sent, limited, coalesced, failed atomic.Int64
	reclaimFails                     atomic.Int64 // Reclaim's failures in a row
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
	run      string // the run the view shows, if any, and its version
	version  int64
	stored   int64     // the store's id of a kept message (0: not kept)
	first    time.Time // first submitted: a final's retries count from here
	// probe marks a final's one try as a new message after its edit kept
	// failing early; orig is the message it was to edit.
	probe bool
	orig  research.Destination
}

// NewOutbox makes an empty outbox; Register platforms, then Run it.
func NewOutbox(log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idle := make(chan struct{})
	close(idle)
	return &Outbox{Log: log, platforms: map[string]*platform{}, pending: map[msgKey]*item{}, posted: map[msgKey]string{},
		finished: map[msgKey]time.Time{}, wake: make(chan struct{}, 1), idle: idle, owner: "o" + newRef() + newRef()}
}

func (o *Outbox) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Outbox) after(d time.Duration) <-chan time.Time {
	if o.After != nil {
		return o.After(d)
	}
	return time.After(d)
}

func (o *Outbox) finalFor() time.Duration {
	if o.FinalFor > 0 {
		return o.FinalFor
	}
	return time.Hour
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
// With a Store, a final view is stored before Submit returns.
func (o *Outbox) Submit(d research.Destination, v View) { o.SubmitRun(d, v, "", 0) }

// SubmitRun is Submit for a view of run runID at its stored version: with a
// Store, an instance never sends a view older than one already sent for the
// run, nor any view but the final once that went out or the run ended.
func (o *Outbox) SubmitRun(d research.Destination, v View, runID string, version int64) {
	if !o.Serves(d.Platform) {
		o.Log.Warn("outbox: no sender for platform", "platform", d.Platform)
		return
	}
	it := &item{dest: d, view: v, run: runID, version: version, first: o.now()}
	if v.Final && o.Store != nil {
		id, kept := o.keep(it)
		if kept {
			return // this run's final is in the store already: its own delivery stands
		}
		it.stored = id
	}
	o.enqueue(keyOf(d), it)
}

// EditRun makes an edit of a run's message outside the queue (an adapter's
// answer to a button press: the confirm turns the quote into the run's card)
// under the order SubmitRun keeps: edit is called only if this outbox has not
// taken the message's final and, with a Store, no newer view of the run nor
// its final went out from any instance and the run has not ended. A final
// of the run waits for the edit in flight, so it stays the last thing the
// message shows. It reports whether edit was called.
func (o *Outbox) EditRun(ctx context.Context, d research.Destination, runID string, version int64, edit func(context.Context) error) (bool, error) {
	o.mu.Lock()
	_, done := o.finished[keyOf(d)]
	o.mu.Unlock()
	if done {
		o.coalesced.Add(1)
		return false, nil
	}
	if o.Store == nil || runID == "" {
		return true, edit(ctx)
	}
	now := o.now()
	until := now.Add(sendTimeout)
	ok, _, err := o.Store.BeginView(context.WithoutCancel(ctx), runID, version, false, now, until)
	if err != nil || !ok {
		o.coalesced.Add(1)
		return false, err // stale, or the order is unknown: progress is best-effort
	}
	sendCtx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	err = edit(sendCtx)
	sent := version
	if err != nil {
		sent = 0
	}
	if e := o.Store.EndView(context.WithoutCancel(ctx), runID, sent, false, until); e != nil {
		o.Log.Warn("outbox: record a view sent", "run_id", runID, "err", e)
	}
	return true, err
}

// keep stores a final view for delivery, claimed by this outbox; 0 when
// the store failed (the view is then delivered from memory only); kept when
// the run's final was stored before.
func (o *Outbox) keep(it *item) (id int64, kept bool) {
	body, err := json.Marshal(storedBody{Dest: it.dest, View: it.view})
	if err != nil {
		o.Log.Error("outbox: encode a final view", "err", err)
		return 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := keyOf(it.dest)
	id, err = o.Store.SaveMessage(ctx, StoredMessage{Platform: k.platform, Key: k.chat + "/" + k.message, RunID: it.run,
		Version: it.version, Body: body, Created: it.first}, o.owner, it.first.Add(claimFor))
	if errors.Is(err, ErrKept) {
		return 0, true
	}
	if err != nil {
		o.Log.Error("outbox: store a final view (delivering it from memory only)", "platform", k.platform, "chat_id", k.chat, "err", err)
		return 0, false
	}
	return id, false
}

// enqueue adds it under k, applying Submit's rules.
func (o *Outbox) enqueue(k msgKey, it *item) {
	var superseded int64
	defer func() {
		if superseded != 0 { // a stored final replaced by a newer one
			o.finish(superseded, false)
		}
	}()
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, done := o.finished[k]; done && !it.view.Final {
		o.coalesced.Add(1)
		return
	}
	if old, ok := o.pending[k]; ok {
		if old.view.Final && !it.view.Final {
			return
		}
		if it.stored != 0 && old.stored == it.stored {
			return // already queued (a claim taken back)
		}
		o.coalesced.Add(1)
		if old.stored != 0 && old.stored != it.stored {
			superseded = old.stored
		}
		it.seq = old.seq
		o.pending[k] = it
	} else {
		select {
		case <-o.idle: // idle until now: Flush callers wait on a new channel
			o.idle = make(chan struct{})
		default: // a delivery is in flight; its end closes the current one
		}
		o.seq++
		it.seq = o.seq
		o.pending[k] = it
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// finish records a stored message as delivered (or given up).
func (o *Outbox) finish(id int64, delivered bool) {
	if id == 0 || o.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Store.FinishMessage(ctx, id, delivered, o.now()); err != nil {
		o.Log.Error("outbox: mark a stored message done", "id", id, "err", err)
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

// Run delivers until ctx ends. With a Store it also renews its claims on
// the stored messages it is delivering and takes over, every few seconds,
// those whose claim lapsed (their process died), for its platforms.
func (o *Outbox) Run(ctx context.Context) {
	var tick <-chan time.Time
	if o.Store != nil {
		t := time.NewTicker(claimEvery)
		defer t.Stop()
		tick = t.C
		o.Reclaim(ctx)
	}
	for {
		it, k, p, wait := o.next(o.now())
		if it == nil {
			var due <-chan time.Time // nil: nothing pending, wait for a wake
			if wait > 0 {
				due = o.after(wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			case <-due:
			case <-tick:
				o.Reclaim(ctx)
			}
			continue
		}
		o.deliver(ctx, it, k, p)
	}
}

// claimFor is how long an outbox's claim on a stored message lasts without
// renewal; claimEvery how often claims are renewed and lapsed ones taken.
const (
	claimFor   = 15 * time.Second
	claimEvery = 2 * time.Second
)

// Reclaim renews this outbox's claims and takes the stored messages of its
// platforms whose claim lapsed, queueing them for delivery.
func (o *Outbox) Reclaim(ctx context.Context) {
	if o.Store == nil {
		return
	}
	now := o.now()
	renewErr := o.Store.RenewMessages(ctx, o.owner, now.Add(claimFor))
	o.mu.Lock()
	names := make([]string, 0, len(o.platforms))
	for name := range o.platforms {
		names = append(names, name)
	}
	o.mu.Unlock()
	ms, err := o.Store.ClaimMessages(ctx, o.owner, names, now, now.Add(claimFor), 100)
	if err = errors.Join(renewErr, err); err != nil {
		// The database is down, say: the 1st, 2nd, 4th... failure in a
		// row is logged, not every tick's.
		if n := o.reclaimFails.Add(1); n&(n-1) == 0 && ctx.Err() == nil {
			o.Log.Warn("outbox: renew and claim stored messages", "err", err, "failures", n)
		}
		if len(ms) == 0 {
			return
		}
	} else if o.reclaimFails.Swap(0) > 0 {
		o.Log.Info("outbox: claiming stored messages works again")
	}
	for _, m := range ms {
		var b storedBody
		if err := json.Unmarshal(m.Body, &b); err != nil {
			o.Log.Error("outbox: decode a stored message", "id", m.ID, "err", err)
			o.finish(m.ID, false)
			continue
		}
		o.Log.Info("outbox: delivering a stored message another process left", "id", m.ID, "platform", m.Platform, "chat_id", b.Dest.ChatID)
		o.enqueue(keyOf(b.Dest), &item{dest: b.Dest, view: b.View, run: m.RunID, version: m.Version, stored: m.ID, first: m.Created})
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
		p.pruneChats(now)
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

// maxChats bounds a platform's per-chat limiters; past it, those of chats
// back to a full budget, and retry-afters that passed, are dropped: a fresh
// limiter is the same as a full one, so no chat loses anything.
const maxChats = 4096

// pruneChats keeps the per-chat maps within maxChats; o.mu is held.
func (p *platform) pruneChats(now time.Time) {
	if len(p.chats) < maxChats {
		return
	}
	for chat, l := range p.chats {
		if l.TokensAt(now) >= float64(l.Burst()) {
			delete(p.chats, chat)
		}
	}
	for chat, until := range p.blocked {
		if !now.Before(until) {
			delete(p.blocked, chat)
		}
	}
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
	defer o.idleIfEmpty()
	now := o.now()
	if wait := o.sharedWait(ctx, k, p, now); wait > 0 {
		// Another instance spent the chat's (or the platform's) budget:
		// this chat waits, keeping only its latest view meanwhile.
		o.mu.Lock()
		p.blocked[k.chat] = now.Add(wait)
		o.mu.Unlock()
		o.requeue(k, it)
		return
	}
	if it.run != "" && o.Store != nil {
		ok, wait, err := o.Store.BeginView(context.WithoutCancel(ctx), it.run, it.version, it.view.Final, now, now.Add(sendTimeout))
		switch {
		case err != nil:
			o.Log.Warn("outbox: view order unknown", "run_id", it.run, "err", err)
			if !it.view.Final {
				return // progress is best-effort; a final goes out anyway
			}
		case !ok:
			// A newer view, or the final, went out from some instance, or
			// the run ended: this view is stale.
			o.coalesced.Add(1)
			return
		case wait > 0:
			// Another instance (or a button press's edit here, EditRun) is
			// sending an older view: the final goes after it, so it is the
			// last thing the message shows. That send takes milliseconds,
			// its window up to sendTimeout: look again every second.
			o.mu.Lock()
			p.blocked[k.chat] = now.Add(min(wait, time.Second))
			o.mu.Unlock()
			o.requeue(k, it)
			return
		}
	}
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
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
	if it.run != "" && o.Store != nil {
		sent := int64(0)
		if err == nil {
			sent = it.version
		}
		if e := o.Store.EndView(context.WithoutCancel(ctx), it.run, sent, it.view.Final, now.Add(sendTimeout)); e != nil {
			o.Log.Warn("outbox: record a view sent", "run_id", it.run, "err", e)
		}
	}
	if it.view.Final && err == nil {
		o.mu.Lock()
		delete(o.posted, k)
		o.mu.Unlock()
	}
	var ra *RetryAfterError
	switch {
	case err == nil:
		o.sent.Add(1)
		o.finish(it.stored, true)
	case errors.As(err, &ra):
		o.limited.Add(1)
		o.mu.Lock()
		p.blocked[k.chat] = o.now().Add(ra.Wait)
		o.mu.Unlock()
		o.requeue(k, it)
	case it.view.Final:
		o.retryFinal(it, k, p, err)
	default:
		// Progress is best-effort: a few tries, unless a newer view came.
		it.attempts++
		if it.attempts < 3 {
			o.mu.Lock()
			p.blocked[k.chat] = o.now().Add(backoff(it.attempts))
			o.mu.Unlock()
			o.requeue(k, it)
			return
		}
		o.failed.Add(1)
		o.Log.Error("outbox: delivery failed", "platform", k.platform, "chat_id", k.chat, "final", false, "err", err)
	}
}

// sharedWait takes a send from the budgets every instance shares, for a
// platform registered with Limits.Shared; it returns how long to wait when
// they have no room (0: send now). A store that cannot be reached makes the
// chat wait a second rather than risk the platform's 429s.
func (o *Outbox) sharedWait(ctx context.Context, k msgKey, p *platform, now time.Time) time.Duration {
	if o.Rates == nil || !p.limits.Shared {
		return 0
	}
	var rules []RateRule
	if l := p.limits; l.PerChat != rate.Inf && l.PerChat > 0 {
		rules = append(rules, RateRule{Key: "ob:" + k.platform + ":chat:" + k.chat, Every: time.Duration(float64(time.Second) / float64(l.PerChat)),
			Burst: max(l.PerChatBurst, 1), Need: 1})
	}
	if l := p.limits; l.Global != rate.Inf && l.Global > 0 {
		rules = append(rules, RateRule{Key: "ob:" + k.platform + ":global", Every: time.Duration(float64(time.Second) / float64(l.Global)),
			Burst: max(l.GlobalBurst, 1), Need: 1})
	}
	if len(rules) == 0 {
		return 0
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	wait, ok, err := o.Rates.TakeRate(rctx, now, rules)
	switch {
	case err != nil:
		o.Log.Warn("outbox: shared budget unavailable; waiting", "platform", k.platform, "chat_id", k.chat, "err", err)
		return time.Second
	case ok:
		return 0
	}
	return max(wait, time.Millisecond)
}

// sendTimeout bounds one delivery.
const sendTimeout = 30 * time.Second

// retryFinal schedules a failed final view again. Its edit is retried with
// backoff (1 s doubling to 1 min) for FinalFor; after four failures it is
// tried once as a new message (the message may be gone: deleted, or too
// old to edit), and if that fails too the platform is down and the edits go
// on. After FinalFor the result is posted as a new message, retried as long
// again, then given up.
func (o *Outbox) retryFinal(it *item, k msgKey, p *platform, err error) {
	it.attempts++
	age := o.now().Sub(it.first)
	delay := backoff(it.attempts)
	switch {
	case age >= 2*o.finalFor():
		o.failed.Add(1)
		o.Log.Error("outbox: final message given up", "platform", k.platform, "chat_id", k.chat, "attempts", it.attempts, "err", err)
		o.finish(it.stored, false)
		return
	case it.dest.MessageID != "" && (it.attempts == 4 || age >= o.finalFor()):
		o.Log.Warn("outbox: final edit keeps failing, posting it as a new message", "platform", k.platform, "chat_id", k.chat, "err", err)
		it.probe = age < o.finalFor()
		it.orig = it.dest
		// Its own key: no other view (a notice, another run's final) can
		// take its place in the queue.
		it.dest.MessageID, it.dest.Ref = "", "final:"+k.message
		k, delay = keyOf(it.dest), 0
	case it.probe:
		o.Log.Warn("outbox: final message failed as a new message too; retrying the edit", "platform", k.platform, "chat_id", k.chat, "err", err)
		it.probe = false
		it.dest = it.orig
		k = keyOf(it.dest)
	default:
		o.Log.Warn("outbox: final message failed, retrying", "platform", k.platform, "chat_id", k.chat, "attempt", it.attempts, "err", err)
	}
	if delay > 0 {
		o.mu.Lock()
		p.blocked[k.chat] = o.now().Add(delay)
		o.mu.Unlock()
	}
	o.requeue(k, it)
}

// backoff is the wait before retry n (from 1): 1 s doubling, at most 1 min.
func backoff(n int) time.Duration {
	if n > 7 {
		return time.Minute
	}
	return min(time.Second<<max(n-1, 0), time.Minute)
}

// idleIfEmpty closes idle once nothing is pending.
func (o *Outbox) idleIfEmpty() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending) == 0 {
		select {
		case <-o.idle:
		default:
			close(o.idle)
		}
	}
}

// requeue puts an unsent item back unless a newer view took its place; a
// final view always comes back in place of a non-final one.
func (o *Outbox) requeue(k msgKey, it *item) {
	o.mu.Lock()
	cur, newer := o.pending[k]
	// A newer view of the message supersedes the one that failed, unless it is that same kept message
	// (one store id) or the failed one is the final over a progress view. Views not kept have no id to
	// compare: any other pending one is newer.
	dropped := newer && !(it.view.Final && !cur.view.Final) && (cur.stored == 0 || cur.stored != it.stored)
	if !dropped {
		o.pending[k] = it // o.idle is still open: deliver closes it after this
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	o.mu.Unlock()
	if dropped {
		o.finish(it.stored, false) // superseded by a newer view of the message
	}
}

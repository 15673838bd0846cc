package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// target is where a call goes.
type target struct {
	chat    int64
	thread  int // forum topic, for messages that reply to nothing
	replyTo int
}

// step is one Bot API call showing part of a view.
type step struct {
	kind     string // "text", "photo" or "document"
	html     bool
	text     string          // the message, or the caption
	kb       *inlineKeyboard // on the first text step only
	file     []byte
	fileName string
}

// plan turns a view into the calls that show it. The first step is always a
// text message: the one edited, or whose id is returned. Progress is plain
// text; everything else HTML, in up to maxParts messages, else a summary and
// the report as a document; then the chart as a photo.
func (a *Adapter) plan(v bots.View, linksAsText bool) []step {
	v = bots.CleanView(v)
	kb, links, dropped := keyboard(v.Buttons, linksAsText)
	if len(dropped) > 0 {
		a.log.Error("telegram: buttons dropped: payload over 64 bytes", "buttons", dropped)
	}
	var steps []step
	// A synthetic report says so on every message it is split into, not only the first: a later part
	// forwarded or read alone must not pass for real prices.
	synthetic := v.Report != nil && v.Report.Synthetic
	mark := italic(syntheticMark).render(syntheticMark, true) + "\n\n"
	limit := maxText
	if synthetic {
		limit -= textLen(mark)
	}
	table := bots.ScanImage(v)
	blocks := htmlBlocks(v, links, table != nil)
	parts := pack(blocks, limit)
	// The first message is the one edited in place and read first: when a report runs over several, it
	// ends with the notice too, not only the last.
	notice := ""
	if v.Report != nil && v.Report.Notice != "" && len(parts) > 1 {
		notice = "\n\n" + italic(v.Report.Notice).render(v.Report.Notice, true)
		parts = pack(blocks, limit-textLen(notice))
	}
	switch {
	case v.Kind == bots.KindProgress && !v.Final:
		steps = []step{{kind: "text", text: plainText(v, links), kb: kb}}
	case len(parts) > maxParts:
		summary := v
		summary.Report, summary.Text = nil, "The full report is in the attached file."
		if summary.Notice == "" && v.Report != nil {
			summary.Notice = v.Report.Notice
		}
		steps = []step{{kind: "text", html: true, text: pack(htmlBlocks(summary, links, false), maxText)[0], kb: kb},
			{kind: "document", file: []byte(documentText(v)), fileName: reportName(v), text: truncate(clean("Full report: "+v.Title), maxCaption)}}
	default:
		for i, p := range parts {
			if synthetic && i > 0 {
				p = mark + p
			}
			if i == 0 && notice != "" && len(parts) > 1 {
				p += notice
			}
			st := step{kind: "text", html: true, text: p}
			if i == 0 {
				st.kb = kb
			}
			steps = append(steps, st)
		}
	}
	if v.File != nil {
		steps = append(steps, step{kind: "document", file: v.File, fileName: nameOr(v.FileName, "report.txt")})
	}
	if table != nil {
		steps = append(steps, step{kind: "photo", file: table, fileName: "scan-" + strings.TrimPrefix(nameOr(v.ImageName, "chart.png"), "chart-"),
			text: truncate(clean("Ranked table: "+v.Title), maxCaption)})
	}
	if v.Image != nil {
		steps = append(steps, step{kind: "photo", file: v.Image, fileName: nameOr(v.ImageName, "chart.png"),
			text: truncate(clean("Chart: "+v.Title), maxCaption)})
	}
	return steps
}

// syntheticMark heads every part after the first of a synthetic report.
const syntheticMark = "SYNTHETIC demo data, not real prices (continued)"

func nameOr(name, def string) string {
	if name == "" {
		return def
	}
	return name
}

// reportName names the report document after the chart: chart-ID.png
// becomes report-ID.txt.
func reportName(v bots.View) string {
	if id, ok := strings.CutPrefix(strings.TrimSuffix(v.ImageName, ".png"), "chart-"); ok && id != "" {
		return "report-" + id + ".txt"
	}
	return "report.txt"
}

// documentText is a long final view as a plain-text file.
func documentText(v bots.View) string {
	var b strings.Builder
	b.WriteString(v.Title + "\n\n")
	for _, f := range v.Fields {
		fmt.Fprintf(&b, "%s: %s\n", f.Name, f.Value)
	}
	b.WriteString("\n")
	if v.Report != nil {
		b.WriteString(bots.RenderReport(*v.Report))
	} else {
		b.WriteString(v.Text)
	}
	if v.Notice != "" && !strings.Contains(b.String(), v.Notice) {
		b.WriteString("\n\n" + v.Notice)
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD") + "\n"
}

// call makes one Bot API call for a step: edits message edit when it is
// not zero, else sends. It returns the message id; "message is not modified"
// is success.
func (a *Adapter) call(ctx context.Context, t target, st step, edit int) (int, error) {
	noPreview := &models.LinkPreviewOptions{IsDisabled: bot.True()}
	var mode models.ParseMode
	if st.html {
		mode = models.ParseModeHTML
	}
	var reply *models.ReplyParameters
	if t.replyTo != 0 {
		reply = &models.ReplyParameters{MessageID: t.replyTo, AllowSendingWithoutReply: true}
	}
	thread := t.thread
	if reply != nil {
		thread = 0 // a reply goes to its message's topic
	}
	var (
		msg    *models.Message
		err    error
		method string
	)
	switch {
	case st.kind == "text" && edit != 0:
		method = "editMessageText"
		msg, err = a.bot.EditMessageText(ctx, &bot.EditMessageTextParams{ChatID: t.chat, MessageID: edit, Text: st.text,
			ParseMode: mode, LinkPreviewOptions: noPreview, ReplyMarkup: st.kb.markup(true)})
	case st.kind == "text":
		method = "sendMessage"
		msg, err = a.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: t.chat, MessageThreadID: thread, Text: st.text,
			ParseMode: mode, LinkPreviewOptions: noPreview, ReplyParameters: reply, ReplyMarkup: st.kb.markup(false)})
	case st.kind == "photo":
		method = "sendPhoto"
		msg, err = a.bot.SendPhoto(ctx, &bot.SendPhotoParams{ChatID: t.chat, MessageThreadID: thread, Caption: st.text,
			Photo: &models.InputFileUpload{Filename: st.fileName, Data: bytes.NewReader(st.file)}, ReplyParameters: reply})
	case st.kind == "document":
		method = "sendDocument"
		msg, err = a.bot.SendDocument(ctx, &bot.SendDocumentParams{ChatID: t.chat, MessageThreadID: thread, Caption: st.text,
			Document: &models.InputFileUpload{Filename: st.fileName, Data: bytes.NewReader(st.file)}, ReplyParameters: reply})
	default:
		return 0, fmt.Errorf("telegram: unknown step %q", st.kind)
	}
	if err := a.redact.classify(method, err); err != nil {
		if edit != 0 && notModified(err) {
			a.remember(t.chat, edit, st)
			return edit, nil
		}
		return 0, err
	}
	id := edit
	if msg != nil && msg.ID != 0 {
		id = msg.ID
	}
	if st.kind == "text" {
		a.remember(t.chat, id, st)
	}
	return id, nil
}

// shownEntry is what a message shows, as a hash.
type shownEntry struct {
	hash uint64
	at   time.Time
}

func stepHash(st step) uint64 {
	h := fnv.New64a()
	kb, _ := json.Marshal(st.kb.markup(true))
	fmt.Fprintf(h, "%t\x00%s\x00%s", st.html, st.text, kb)
	return h.Sum64()
}

// remember records what message id now shows.
func (a *Adapter) remember(chat int64, id int, st step) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if len(a.shown) >= 10000 {
		for k, e := range a.shown {
			if now.Sub(e.at) > time.Hour {
				delete(a.shown, k)
			}
		}
	}
	a.shown[msgKey{chat, id}] = shownEntry{stepHash(st), now}
}

// showing reports whether message id already shows st.
func (a *Adapter) showing(chat int64, id int, st step) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.shown[msgKey{chat, id}]
	return ok && e.hash == stepHash(st)
}

// first makes the first call of a plan (through callNow when a user waits
// for it); when Telegram refuses a link button it plans again with the links
// in the text and retries once.
func (a *Adapter) first(ctx context.Context, t target, steps *[]step, v bots.View, edit int, now bool) (int, error) {
	call := a.call
	if now {
		call = a.callNow
	}
	id, err := call(ctx, t, (*steps)[0], edit)
	if badLink(err) {
		a.log.Warn("telegram: link button refused; showing the link as text", "chat_id", t.chat, "err", err)
		*steps = a.plan(v, true)
		id, err = call(ctx, t, (*steps)[0], edit)
	}
	return id, err
}

// lockMsg is the lock that orders edits of one message.
func (a *Adapter) lockMsg(chat int64, id int) func() {
	h := uint64(chat)*1_000_003 ^ uint64(id)
	m := &a.msgLocks[h%uint64(len(a.msgLocks))]
	m.Lock()
	return m.Unlock
}

func (a *Adapter) markFinal(chat int64, id int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if len(a.finalized) >= 10000 {
		for k, at := range a.finalized {
			if now.Sub(at) > 24*time.Hour {
				delete(a.finalized, k)
			}
		}
	}
	a.finalized[msgKey{chat, id}] = now
}

func (a *Adapter) isFinal(chat int64, id int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.finalized[msgKey{chat, id}]
	return ok
}

func parseDest(d research.Destination) (target, int, error) {
	// "user:ID" is the user's private chat (bots.PrivateChat): on Telegram
	// its chat id is the user's id.
	chat, err := strconv.ParseInt(strings.TrimPrefix(d.ChatID, "user:"), 10, 64)
	if err != nil {
		return target{}, 0, fmt.Errorf("telegram: bad chat id %q", d.ChatID)
	}
	t := target{chat: chat}
	if d.ThreadID != "" {
		t.thread, _ = strconv.Atoi(d.ThreadID)
	}
	var msg int
	if d.MessageID != "" {
		if msg, err = strconv.Atoi(d.MessageID); err != nil {
			return target{}, 0, fmt.Errorf("telegram: bad message id %q", d.MessageID)
		}
	}
	return t, msg, nil
}

// Send implements bots.Sender: it posts v as a new message and returns its id.
func (a *Adapter) Send(ctx context.Context, d research.Destination, v bots.View) (id string, err error) {
	defer a.recoverSend("send", &err)
	t, _, err := parseDest(d)
	if err != nil {
		return "", err
	}
	if v.Final {
		n, err := a.deliverFinal(ctx, t, 0, v)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(n), nil
	}
	if wait, ok := a.budget.progressEdit(t.chat); !ok {
		return "", &bots.RetryAfterError{Wait: min(wait, deferStep)}
	}
	steps := a.plan(v, false)
	n, err := a.first(ctx, t, &steps, v, 0, false)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(n), nil
}

// Edit implements bots.Sender. Every edit waits for the chat's budget (a
// short *bots.RetryAfterError tells the outbox to come back), progress edits
// leaving room for finals; a final view's attachments follow in the
// background.
func (a *Adapter) Edit(ctx context.Context, d research.Destination, v bots.View) (err error) {
	defer a.recoverSend("edit", &err)
	t, msg, err := parseDest(d)
	if err != nil {
		return err
	}
	if msg == 0 {
		_, err := a.Send(ctx, d, v)
		return err
	}
	if v.Final {
		_, err := a.deliverFinal(ctx, t, msg, v)
		return err
	}
	steps := a.plan(v, false)
	unlock := a.lockMsg(t.chat, msg)
	if a.isFinal(t.chat, msg) || a.showing(t.chat, msg, steps[0]) {
		unlock() // nothing to change: no call, no budget spent
		return nil
	}
	if wait, ok := a.budget.progressEdit(t.chat); !ok {
		unlock()
		return &bots.RetryAfterError{Wait: min(wait, deferStep)}
	}
	_, err = a.first(ctx, t, &steps, v, msg, false)
	unlock()
	if gone(err) {
		a.log.Debug("telegram: progress message gone; the final will be posted anew", "chat_id", t.chat, "message_id", msg)
		return nil
	}
	return err
}

// deliverFinal shows a final view. The run's message becomes the final
// message (or a new one, if it is gone) as soon as the chat's budget allows;
// further parts, the document and the chart follow as replies to it from the
// chat's attachment queue, so that the outbox can go on with other finals.
func (a *Adapter) deliverFinal(ctx context.Context, t target, msg int, v bots.View) (int, error) {
	steps := a.plan(v, false)
	if msg != 0 && a.isFinal(t.chat, msg) && a.showing(t.chat, msg, steps[0]) {
		return msg, nil // delivered already (a retry after a lost answer)
	}
	if wait, ok := a.budget.final(t.chat); !ok {
		return 0, &bots.RetryAfterError{Wait: min(wait, deferStep)}
	}
	id, err := a.finalMain(ctx, t, &steps, v, msg)
	if err != nil {
		return 0, err
	}
	if len(steps) > 1 {
		t.replyTo = id
		a.queueParts(t, steps[1:])
	}
	return id, nil
}

func (a *Adapter) finalMain(ctx context.Context, t target, steps *[]step, v bots.View, msg int) (int, error) {
	if msg != 0 {
		unlock := a.lockMsg(t.chat, msg)
		_, err := a.first(ctx, t, steps, v, msg, false)
		if err == nil {
			a.markFinal(t.chat, msg)
		}
		unlock()
		if !gone(err) {
			return msg, err
		}
		a.log.Info("telegram: run message gone; posting the final anew", "chat_id", t.chat, "message_id", msg)
	}
	id, err := a.first(ctx, t, steps, v, 0, false)
	if err == nil {
		a.markFinal(t.chat, id)
	}
	return id, err
}

// queueParts sends the further parts of a final message in the background,
// one chat at a time, as the chat's budget allows.
func (a *Adapter) queueParts(t target, steps []step) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping {
		a.log.Warn("telegram: shutting down; attachments of a final message dropped", "chat_id", t.chat, "parts", len(steps))
		return
	}
	a.parts[t.chat] = append(a.parts[t.chat], partJob{t, steps})
	if a.partsBusy == 0 {
		a.partsIdle = make(chan struct{})
	}
	a.partsBusy++
	if len(a.parts[t.chat]) == 1 {
		a.inflight.Add(1)
		go a.sendParts(t.chat)
	}
}

type partJob struct {
	t     target
	steps []step
}

func (a *Adapter) sendParts(chat int64) {
	defer a.inflight.Done()
	for {
		a.mu.Lock()
		job := a.parts[chat][0]
		a.mu.Unlock()
		for _, s := range job.steps {
			a.sendPart(a.workCtx, job.t, s)
		}
		a.mu.Lock()
		a.parts[chat] = a.parts[chat][1:]
		a.partsBusy--
		if a.partsBusy == 0 {
			close(a.partsIdle)
		}
		if len(a.parts[chat]) == 0 {
			delete(a.parts, chat)
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
}

// sendPart makes one further part's call, waiting for the budget, honouring
// retry_after and retrying a failed call a few times.
func (a *Adapter) sendPart(ctx context.Context, t target, s step) {
	var err error
	for attempt := 1; attempt <= 4; attempt++ {
		for {
			wait, ok := a.budget.part(t.chat)
			if ok {
				break
			}
			if !sleep(ctx, wait) {
				return
			}
		}
		if _, err = a.call(ctx, t, s, 0); err == nil {
			return
		}
		var ra *bots.RetryAfterError
		switch {
		case errors.As(err, &ra):
			if !sleep(ctx, ra.Wait) {
				return
			}
		case permanent(err):
			a.log.Warn("telegram: part of a final message refused", "chat_id", t.chat, "kind", s.kind, "err", err)
			return
		default:
			if !sleep(ctx, time.Duration(attempt)*time.Second) {
				return
			}
		}
	}
	a.log.Error("telegram: part of a final message not sent", "chat_id", t.chat, "kind", s.kind, "err", err)
}

// Flush waits until the attachments of final messages are sent, or ctx ends.
func (a *Adapter) Flush(ctx context.Context) error {
	a.mu.Lock()
	idle := a.partsIdle
	a.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Adapter) recoverSend(op string, err *error) {
	if p := recover(); p != nil {
		ref := newRef()
		a.log.Error("telegram: sender panicked", "ref", ref, "op", op, "panic", a.redact.String(fmt.Sprint(p)),
			"stack", a.redact.String(string(debug.Stack())))
		*err = fmt.Errorf("telegram: %s panicked (ref %s)", op, ref)
	}
}

// callNow makes a call a user is waiting for: it waits for the chat's
// budget (briefly), and waits out a short retry_after once.
func (a *Adapter) callNow(ctx context.Context, t target, st step, edit int) (int, error) {
	if !a.budget.wait(ctx, t.chat) {
		return 0, fmt.Errorf("telegram: no rate budget for chat %d in time: %w", t.chat, ctx.Err())
	}
	id, err := a.call(ctx, t, st, edit)
	var ra *bots.RetryAfterError
	if errors.As(err, &ra) && ra.Wait <= maxReplyWait && sleep(ctx, ra.Wait) {
		id, err = a.call(ctx, t, st, edit)
	}
	return id, err
}

// sendView posts a view for a user waiting on it; further parts reply to
// the first message.
func (a *Adapter) sendView(ctx context.Context, t target, v bots.View) (int, error) {
	if v.Invoice != nil {
		return a.sendInvoice(ctx, t, v)
	}
	steps := a.plan(v, false)
	id, err := a.first(ctx, t, &steps, v, 0, true)
	if err != nil {
		return 0, err
	}
	a.rest(ctx, t, id, steps[1:])
	return id, nil
}

// editView replaces message msg with a view for a user waiting on it. A
// message that shows a final view is left alone (a run can finish before the
// press that started it is answered); one that is gone is posted anew.
func (a *Adapter) editView(ctx context.Context, t target, msg int, v bots.View) (int, error) {
	steps := a.plan(v, false)
	var err error
	for attempt := 0; ; attempt++ {
		if !a.budget.wait(ctx, t.chat) { // before the lock: the outbox must not wait on it
			return 0, fmt.Errorf("telegram: no rate budget for chat %d in time: %w", t.chat, ctx.Err())
		}
		unlock := a.lockMsg(t.chat, msg)
		if a.isFinal(t.chat, msg) || a.showing(t.chat, msg, steps[0]) {
			unlock()
			return msg, nil
		}
		_, err = a.first(ctx, t, &steps, v, msg, false)
		if err == nil && v.Final {
			a.markFinal(t.chat, msg)
		}
		unlock()
		var ra *bots.RetryAfterError
		if attempt > 0 || !errors.As(err, &ra) || ra.Wait > maxReplyWait || !sleep(ctx, ra.Wait) {
			break
		}
	}
	if gone(err) {
		return a.sendView(ctx, t, v)
	}
	if err != nil {
		return 0, err
	}
	a.rest(ctx, t, msg, steps[1:])
	return msg, nil
}

// sleep waits d unless ctx ends first; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (a *Adapter) rest(ctx context.Context, t target, first int, steps []step) {
	t.replyTo = first
	for _, s := range steps {
		if _, err := a.callNow(ctx, t, s, 0); err != nil {
			a.log.Warn("telegram: part of a message not sent", "chat_id", t.chat, "kind", s.kind, "err", err)
		}
	}
}

package telegram

import (
	"context"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// handlerTimeout bounds the handling of one update.
const handlerTimeout = time.Minute

// answer answers a callback query exactly once.
type answer struct {
	a    *Adapter
	id   string
	once sync.Once
}

// send answers with text (an alert the presser must dismiss when alert is
// set, else a passing note) unless already answered; it reports whether
// this call answered.
func (q *answer) send(ctx context.Context, text string, alert bool) bool {
	did := false
	q.once.Do(func() {
		did = true
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		text = truncate(clean(text), maxAlert)
		_, err := q.a.bot.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: q.id, Text: text, ShowAlert: alert && text != ""})
		if err != nil {
			q.a.log.Warn("telegram: answerCallbackQuery failed", "err", q.a.redact.classify("answerCallbackQuery", err))
		}
	})
	return did
}

// process handles one update in its own goroutine. A panic is logged with a
// reference the user is shown.
func (a *Adapter) process(ctx context.Context, upd *models.Update) {
	defer a.inflight.Done()
	ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
	defer cancel()
	var ans *answer
	if upd.CallbackQuery != nil {
		ans = &answer{a: a, id: upd.CallbackQuery.ID}
	}
	defer func() {
		p := recover()
		if p == nil {
			if ans != nil {
				ans.send(ctx, "", false) // every press is answered, even with nothing
			}
			return
		}
		ref := newRef()
		a.log.Error("telegram: update handler panicked", "ref", ref, "update_id", upd.ID,
			"panic", a.redact.String(fmt.Sprint(p)), "stack", a.redact.String(string(debug.Stack())))
		a.apologise(ctx, upd, ans, ref)
	}()
	switch {
	case upd.PreCheckoutQuery != nil:
		a.onPreCheckout(ctx, upd.PreCheckoutQuery)
	case upd.Message != nil && upd.Message.SuccessfulPayment != nil:
		a.onPayment(ctx, upd.Message)
	case upd.CallbackQuery != nil:
		a.onCallback(ctx, upd.CallbackQuery, ans)
	case upd.Message != nil:
		a.onMessage(ctx, upd.Message)
	}
}

// apologise tells the user a handler failed: in the press's answer if it is
// still open, else in the chat.
func (a *Adapter) apologise(ctx context.Context, upd *models.Update, ans *answer, ref string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	text := "Something went wrong (ref " + ref + ")."
	if ans != nil && ans.send(ctx, text, true) {
		return
	}
	var t target
	switch {
	case upd.Message != nil:
		t = target{chat: upd.Message.Chat.ID, replyTo: upd.Message.ID}
	case upd.CallbackQuery != nil:
		if c, id, ok := pressed(upd.CallbackQuery); ok {
			t = target{chat: c.ID, replyTo: id}
		}
	}
	if t.chat == 0 {
		return
	}
	if _, err := a.callNow(ctx, t, step{kind: "text", text: text}, 0); err != nil {
		a.log.Warn("telegram: could not apologise", "ref", ref, "err", err)
	}
}

func identity(u models.User) billing.Identity {
	return billing.Identity{Platform: Platform, ExternalID: strconv.FormatInt(u.ID, 10)}
}

func isGroup(c models.Chat) bool {
	if c.Type == "" {
		return c.ID < 0
	}
	return c.Type == models.ChatTypeGroup || c.Type == models.ChatTypeSupergroup
}

func chatOf(c models.Chat) bots.Chat {
	return bots.Chat{Platform: Platform, ID: strconv.FormatInt(c.ID, 10), Group: isGroup(c)}
}

func emptyView(v bots.View) bool {
	return v.Kind == "" && v.Title == "" && v.Text == "" && len(v.Fields) == 0 && len(v.Buttons) == 0 && v.Image == nil && v.File == nil
}

// forOthers reports whether a group command names another bot
// ("/research@otherbot").
func (a *Adapter) forOthers(text string) bool {
	first, _, _ := strings.Cut(text, " ")
	_, name, addressed := strings.Cut(first, "@")
	me := a.botName()
	return addressed && me != "" && !strings.EqualFold(name, me)
}

func (a *Adapter) onMessage(ctx context.Context, m *models.Message) {
	if m.Chat.Type == models.ChatTypeChannel || m.Text == "" {
		return
	}
	group := isGroup(m.Chat)
	command := strings.HasPrefix(m.Text, "/")
	if group && (!command || a.forOthers(m.Text)) {
		return // group chatter is not for us
	}
	t := target{chat: m.Chat.ID, replyTo: m.ID}
	if m.SenderChat != nil || m.From == nil || m.From.IsBot {
		// Anonymous admins and channels post as a chat: there is no person
		// to bill, and all of them would share one identity.
		if command && m.SenderChat != nil {
			a.sendOrLog(ctx, t, bots.View{Kind: bots.KindError, Text: "Send commands from your own account: anonymous admins and channels cannot have a wallet here."})
		}
		return
	}
	in := bots.Incoming{Identity: identity(*m.From), Chat: chatOf(m.Chat), Text: m.Text, MessageID: strconv.Itoa(m.ID)}
	for _, r := range a.conv.Handle(ctx, in) {
		if r.Alert != "" {
			a.sendOrLog(ctx, t, bots.View{Kind: bots.KindInfo, Text: r.Alert})
		}
		if !emptyView(r.View) {
			a.show(ctx, t, group, *m.From, r.View)
		}
	}
}

// show posts a view answering a user. In a group, a private view that is
// not a quote or an error (a link code, receipts, usage) goes to the user's
// private chat instead: Telegram has no messages only one member sees.
func (a *Adapter) show(ctx context.Context, t target, group bool, who models.User, v bots.View) {
	if group && v.Private && v.Public != nil {
		a.sendOrLog(ctx, t, a.forGroup(ctx, who, v))
		return
	}
	if !group || !v.Private || v.Kind == bots.KindQuote || v.Kind == bots.KindError {
		a.sendOrLog(ctx, t, v)
		return
	}
	_, err := a.sendView(ctx, target{chat: who.ID}, v)
	switch {
	case err == nil:
		a.sendOrLog(ctx, t, bots.View{Kind: bots.KindInfo, Text: "I sent you the answer in a private chat."})
	case forbidden(err):
		a.sendOrLog(ctx, t, bots.View{Kind: bots.KindInfo, Buttons: a.startButton(),
			Text: "That answer is private, and I cannot message you yet: open a private chat with me, press Start, and send the command there."})
	default:
		a.log.Warn("telegram: private answer not sent", "chat_id", who.ID, "err", err)
	}
}

// forGroup is what a group shows of a private view that has a public
// form (a quote: no balance or shortfall in it). The full view, without
// its buttons, goes to the user's private chat; when the user never started
// the bot, the group's card gets a button that opens the private chat.
func (a *Adapter) forGroup(ctx context.Context, who models.User, v bots.View) bots.View {
	pub := *v.Public
	full := v
	full.Buttons, full.Public = nil, nil
	_, err := a.sendView(ctx, target{chat: who.ID}, full)
	switch {
	case err == nil:
	case forbidden(err):
		pub.Text = strings.TrimSpace(pub.Text + " To see your figures, open a private chat with me and press Start.")
		pub.Buttons = append(append([][]bots.Button{}, pub.Buttons...), a.startButton()...)
	default:
		a.log.Warn("telegram: private figures not sent", "chat_id", who.ID, "err", err)
	}
	return pub
}

// startButton opens the private chat with the bot (a t.me deep link), when
// the bot's name is known.
func (a *Adapter) startButton() [][]bots.Button {
	name := a.botName()
	if name == "" {
		return nil
	}
	return [][]bots.Button{{{Label: "Open a private chat", URL: "https://t.me/" + name + "?start=private"}}}
}

func (a *Adapter) sendOrLog(ctx context.Context, t target, v bots.View) {
	u := updateOf(ctx)
	if _, err := a.sendView(ctx, t, v); err != nil {
		id := int64(0)
		if u != nil {
			u.failed.Store(true)
			id = u.id
		}
		a.log.Warn("telegram: reply not sent", "update_id", id, "chat_id", t.chat, "err", err)
	} else if u != nil {
		u.sent.Store(true)
	}
}

// pressed finds the chat and message a button was on. An old message comes
// as an InaccessibleMessage with only those; an inline message has none.
func pressed(q *models.CallbackQuery) (models.Chat, int, bool) {
	switch {
	case q.Message.Message != nil:
		return q.Message.Message.Chat, q.Message.Message.ID, true
	case q.Message.InaccessibleMessage != nil:
		return q.Message.InaccessibleMessage.Chat, q.Message.InaccessibleMessage.MessageID, true
	}
	return models.Chat{}, 0, false
}

func (a *Adapter) onCallback(ctx context.Context, q *models.CallbackQuery, ans *answer) {
	// The conversation answers in milliseconds; should it not, the press is
	// answered empty so the client stops spinning.
	timer := time.AfterFunc(a.cfg.AnswerWithin, func() { ans.send(ctx, "", false) })
	defer timer.Stop()
	chat, msg, ok := pressed(q)
	if !ok {
		ans.send(ctx, "This button does not work here.", true)
		return
	}
	if q.Data == "" {
		return
	}
	in := bots.Incoming{Identity: identity(q.From), Chat: chatOf(chat), Button: q.Data, MessageID: strconv.Itoa(msg)}
	replies := a.conv.Handle(ctx, in)
	// Answer first, so the spinner stops before any edit. An alert without
	// a view is a refusal or an acknowledgement the presser must see: a
	// dialog; with a view, a passing note.
	late := ""
	for _, r := range replies {
		if r.Alert != "" {
			dialog := emptyView(r.View)
			if !ans.send(ctx, r.Alert, dialog) && dialog && r.Refused {
				// The press was answered empty at AnswerWithin; a refusal
				// must still reach the presser (an acknowledgement need not:
				// the message's own edit shows it).
				late = r.Alert
			}
			break
		}
	}
	ans.send(ctx, "", false)
	t := target{chat: chat.ID}
	if q.Message.Message != nil && q.Message.Message.IsTopicMessage {
		t.thread = q.Message.Message.MessageThreadID
	}
	if late != "" {
		a.tellLate(ctx, t, msg, isGroup(chat), q.From, late)
	}
	for _, r := range replies {
		if emptyView(r.View) {
			continue
		}
		if !r.Edit {
			rt := t
			rt.replyTo = msg
			a.show(ctx, rt, isGroup(chat), q.From, r.View)
			continue
		}
		v := r.View
		if isGroup(chat) && v.Private && v.Public != nil {
			v = a.forGroup(ctx, q.From, v)
		}
		var id int
		edit := func(ctx context.Context) (err error) {
			id, err = a.editView(ctx, t, msg, v)
			return err
		}
		var err error
		if r.RunID != "" {
			// A view of a run: it must not replace the run's final (or a
			// newer view) another instance's outbox sent meanwhile.
			d := research.Destination{Platform: Platform, ChatID: strconv.FormatInt(chat.ID, 10), MessageID: strconv.Itoa(msg)}
			var sent bool
			if sent, err = a.conv.EditRun(ctx, d, r.RunID, r.RunVersion, edit); err == nil && !sent {
				continue // stale: the outbox shows the run's newer state
			}
		} else {
			err = edit(ctx)
		}
		if err != nil {
			a.log.Warn("telegram: edit after a press failed", "chat_id", chat.ID, "message_id", msg, "err", err)
			continue
		}
		if id != msg && r.RunID != "" {
			// The quote message was gone: the run reports to the new one.
			d := research.Destination{Platform: Platform, ChatID: strconv.FormatInt(chat.ID, 10), MessageID: strconv.Itoa(id)}
			if t.thread != 0 {
				d.ThreadID = strconv.Itoa(t.thread)
			}
			if err := a.conv.MoveRun(ctx, r.RunID, in.Identity, d); err != nil {
				a.log.Warn("telegram: could not move the run to its new message", "run_id", r.RunID, "err", err)
			}
		}
	}
}

// tellLate posts an alert that came after the press was answered (a callback
// query is answered once) as a short reply to the pressed message: nothing
// else would tell the presser that their press was refused. In a group it
// names the presser, since everyone sees it.
func (a *Adapter) tellLate(ctx context.Context, t target, msg int, group bool, who models.User, text string) {
	if group {
		text = strings.TrimSpace(who.FirstName) + ": " + text
	}
	t.replyTo = msg
	a.sendOrLog(ctx, t, bots.View{Kind: bots.KindInfo, Text: text})
}

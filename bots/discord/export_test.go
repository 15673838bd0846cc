package discord

import "github.com/tokensforge/forgebot/bots"

// PanicOnRender makes a panic, as a bug would, whenever a renders a view
// titled title. The panic value carries the bot token, which must not reach
// a log line. Call it before the adapter starts.
func PanicOnRender(a *Adapter, title string) {
	a.render = func(v bots.View) message {
		if v.Title == title {
			panic("render bug holding " + a.cfg.Token)
		}
		return render(v)
	}
}

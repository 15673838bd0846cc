// Package console is the terminal chat: the conversation layer on stdin and
// stdout. Commands are typed as in a chat (/research NVDA); buttons become
// numbered choices, pressed by typing their number.
package console

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mattn/go-isatty"
	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// IsTerminal reports whether f is a terminal (not a file or a pipe).
func IsTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// Platform is the console's platform name in identities and destinations.
const Platform = "console"

// MaxLine is the longest line the console reads as a command; a longer one
// is refused (and skipped to its end), so no paste can end the chat.
const MaxLine = 4096

// Console is one terminal user's chat.
//
// Choices are bound to the message they belong to. The numbers (1, 2, …)
// are the choices of the latest message that offers some and is not a run's
// progress (a quote, a schedule's quote); a run's progress line offers its
// own keys, named for its run ("c1" cancels run 1, "p1" pauses it), so a
// progress update can never take over a number the user is about to type.
//
// On a terminal (Terminal set) each run's progress is one line, redrawn in
// place while it is among the lines just above the prompt; elsewhere
// progress is plain lines, one when a run's stage or state changes, with no
// cursor controls. Exactly one prompt follows every reply.
type Console struct {
	Conv     *bots.Conversation
	User     billing.Identity
	Out      io.Writer
	ChartDir string // where final charts are written; "" = not written
	Terminal bool   // Out is a terminal: progress is redrawn in place

	mu       sync.Mutex
	choices  []string          // payloads of the latest message's numbered choices, by number-1
	runKeys  map[string]string // progress keys ("c1") to payloads
	runTags  map[string]int    // run id to its number in this session
	msgRun   map[string]string // progress message id to its run
	lastRun  string
	messages int
	// Screen state: whether the prompt is the last thing written, the
	// progress lines (message ids) directly above it, bottom last, and
	// the last plain progress line written per message (no terminal).
	atPrompt bool
	owed     bool // plain progress took the prompt's line: the next output gives it back
	above    []string
	plain    map[string]string
}

var _ bots.Sender = (*Console)(nil)

// Limits keep a terminal readable: progress at most 4 updates a second.
var Limits = bots.Limits{PerChat: rate.Limit(4), PerChatBurst: 2}

// Chat is the console's one chat.
func (c *Console) chat() bots.Chat { return bots.Chat{Platform: Platform, ID: c.User.ExternalID} }

// Send implements bots.Sender.
func (c *Console) Send(_ context.Context, d research.Destination, v bots.View) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.messages++
	id := strconv.Itoa(c.messages)
	c.show(id, v)
	return id, nil
}

// Edit implements bots.Sender: a progress line is redrawn where it can be,
// anything else is written anew.
func (c *Console) Edit(_ context.Context, d research.Destination, v bots.View) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := d.MessageID
	if id == "" {
		c.messages++
		id = strconv.Itoa(c.messages)
	}
	c.show(id, v)
	return nil
}

// ActiveRun is the run the user confirmed last, if it may still be running.
func (c *Console) ActiveRun() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRun
}

// Run reads commands until EOF, "quit" or ctx ends.
func (c *Console) Run(ctx context.Context, in io.Reader) error {
	fmt.Fprintf(c.Out, "forgebot console: you are %s. Type /help, a command, or the number of a choice. Ctrl-C cancels a run; quit exits.\n", c.User)
	lines := make(chan string)
	errc := make(chan error, 1)
	go func() {
		br := bufio.NewReader(in)
		for {
			line, err := readLine(br)
			if err != nil {
				errc <- err
				close(lines)
				return
			}
			// The Enter moved the screen (a terminal echoed it) as soon as
			// it was read, not when the loop gets to the line: from now a
			// progress redraw must not count on the lines above the prompt.
			c.entered()
			lines <- line
		}
	}()
	for {
		c.prompt()
		var line string
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				c.write("\n")
				if err := <-errc; err != io.EOF {
					return err
				}
				c.sayUnfinished()
				return nil
			}
			line = strings.TrimSpace(l)
		}
		if line == "quit" || line == "exit" {
			c.sayUnfinished()
			return nil
		}
		if line != "" {
			c.Handle(ctx, line)
		}
	}
}

// sayUnfinished tells a user who quits which of their runs have not ended:
// they are not lost, the next start of this process's store goes on with them.
func (c *Console) sayUnfinished() {
	c.mu.Lock()
	var tags []int
	for _, run := range c.msgRun {
		tags = append(tags, c.tagOf(run))
	}
	c.mu.Unlock()
	if len(tags) == 0 {
		return
	}
	slices.Sort(tags)
	names := make([]string, len(tags))
	for i, n := range tags {
		names[i] = "run " + strconv.Itoa(n)
	}
	c.write(fmt.Sprintf("* Not finished: %s. Nothing is lost: the next start here goes on with it and shows its result; its hold stays until then (to stop a run instead, cancel it before you quit).\n", strings.Join(names, ", ")))
}

// entered notes that the user's Enter moved the screen: the prompt and the
// progress lines above it are no longer where they were.
func (c *Console) entered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.atPrompt, c.owed, c.above = false, false, nil
}

// runKeyRE matches a run's progress key as typed: an action's letter and
// the run's number (c1, p2, r1, m1, w1).
var runKeyRE = regexp.MustCompile(`^([cprmw])([0-9]{1,4})$`)

// tooLong stands for a line over MaxLine, skipped to its end.
const tooLong = "\x00too long"

// readLine reads one line of any length, keeping at most MaxLine bytes; a
// longer line comes back as tooLong.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	over := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !over {
			b = append(b, chunk...)
			if len(b) > MaxLine+2 {
				over, b = true, nil
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && (len(b) > 0 || over):
			err = nil
		case err != nil:
			return "", err
		}
		if over {
			return tooLong, nil
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

// Handle answers one typed line.
func (c *Console) Handle(ctx context.Context, line string) {
	if line == tooLong {
		c.write(fmt.Sprintf("That line is too long (over %d characters): commands are short, like /research AAPL.\n", MaxLine))
		return
	}
	inc := bots.Incoming{Identity: c.User, Chat: c.chat(), Text: line}
	c.mu.Lock()
	if n, err := strconv.Atoi(line); err == nil {
		if n < 1 || n > len(c.choices) {
			c.mu.Unlock()
			c.write(fmt.Sprintf("No choice %d.\n", n))
			return
		}
		inc.Text, inc.Button = "", c.choices[n-1]
	} else if p, ok := c.runKeys[strings.ToLower(line)]; ok {
		inc.Text, inc.Button = "", p
	} else if m := runKeyRE.FindStringSubmatch(strings.ToLower(line)); m != nil {
		// A run's key that is not (or no longer) offered: say so, rather
		// than "Commands start with /".
		n, _ := strconv.Atoi(m[2])
		known := false
		for _, tag := range c.runTags {
			known = known || tag == n
		}
		c.mu.Unlock()
		if known {
			c.write(fmt.Sprintf("Run %d offers no %s now (it has ended, or that action is not open to it); see its last line.\n", n, line))
		} else {
			c.write(fmt.Sprintf("No run %d in this session: keys like c1 (cancel) and p1 (pause) act on the run numbered on its progress line.\n", n))
		}
		return
	}
	c.mu.Unlock()
	for _, r := range c.Conv.Handle(ctx, inc) {
		if r.Alert != "" {
			c.write("* " + r.Alert + "\n")
		}
		if r.View.Kind == bots.KindProgress {
			// The outbox prints the run's progress; remember which run it is.
			c.mu.Lock()
			c.lastRun = runOf(r.View)
			c.tagOf(c.lastRun)
			c.mu.Unlock()
			continue
		}
		if r.View.Kind != "" || r.View.Text != "" {
			c.mu.Lock()
			c.messages++
			c.show(strconv.Itoa(c.messages), r.View)
			c.mu.Unlock()
		}
	}
}

// prompt writes the prompt unless it is already the last thing on screen.
func (c *Console) prompt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.atPrompt {
		fmt.Fprint(c.Out, "> ")
		c.atPrompt, c.owed = true, false
	}
}

// write writes text that is not a message (a notice, a refusal) as show would.
func (c *Console) write(text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leavePrompt()
	fmt.Fprint(c.Out, text)
	c.above = nil
	c.restorePrompt()
}

// leavePrompt clears a prompt line being shown, so output starts at the line's start.
func (c *Console) leavePrompt() {
	if c.atPrompt {
		if c.Terminal {
			fmt.Fprint(c.Out, "\r\033[K")
		} else {
			fmt.Fprintln(c.Out)
		}
	}
}

// restorePrompt writes the prompt again after output that interrupted it.
func (c *Console) restorePrompt() {
	if c.atPrompt || c.owed {
		fmt.Fprint(c.Out, "> ")
		c.atPrompt, c.owed = true, false
	}
}

// tagOf numbers a run for its progress keys; c.mu is held.
func (c *Console) tagOf(run string) int {
	if run == "" {
		return 0
	}
	if c.runTags == nil {
		c.runTags = map[string]int{}
	}
	if n, ok := c.runTags[run]; ok {
		return n
	}
	c.runTags[run] = len(c.runTags) + 1
	return c.runTags[run]
}

// runOf finds the run id in a progress view's buttons.
func runOf(v bots.View) string {
	for _, row := range v.Buttons {
		for _, b := range row {
			if strings.HasPrefix(b.Data, "r:") {
				return strings.Split(b.Data, ":")[1]
			}
		}
	}
	return ""
}

// show writes message id's view v; c.mu is held.
func (c *Console) show(id string, v bots.View) {
	if v.Kind == bots.KindProgress {
		c.showProgress(id, v)
		return
	}
	c.leavePrompt()
	// A final view ends a run's choices (Cancel, Pause); its links are not
	// choices. Choices of a quote or a schedule on screen stay: a run that
	// ends meanwhile must not take away the Confirm being read. So a run's
	// final offers its own choices (a low balance's top-ups) under keys
	// named for its run, "1.1", "1.2" for run 1, never the numbers.
	tag := 0
	if v.Final {
		run := c.msgRun[id]
		if run == "" {
			run = runOf(v)
		}
		tag = c.tagOf(run)
		c.endRun(id, v)
	}
	prefix := ""
	if tag > 0 {
		prefix = strconv.Itoa(tag) + "."
	}
	choices := c.render(c.Out, v, prefix)
	switch {
	case prefix != "":
		if c.runKeys == nil {
			c.runKeys = map[string]string{}
		}
		for i, p := range choices {
			c.runKeys[prefix+strconv.Itoa(i+1)] = p
		}
	case len(choices) > 0:
		c.choices = choices
	}
	c.above = nil
	c.restorePrompt()
}

// endRun forgets an ended run's progress keys; c.mu is held.
func (c *Console) endRun(id string, v bots.View) {
	if run := c.msgRun[id]; run != "" {
		for k, p := range c.runKeys {
			if strings.HasPrefix(p, "r:"+run+":") {
				delete(c.runKeys, k)
			}
		}
	}
	delete(c.plain, id)
	delete(c.msgRun, id)
	c.lastRun = ""
}

// showProgress writes a run's progress line: redrawn in place on a
// terminal when it is among the lines just above the prompt, else a new
// line; without a terminal, a plain line when the run's stage or state
// changed. c.mu is held.
func (c *Console) showProgress(id string, v bots.View) {
	v = bots.CleanView(v)
	run := runOf(v)
	tag := c.tagOf(run)
	if run != "" {
		if c.msgRun == nil {
			c.msgRun = map[string]string{}
		}
		c.msgRun[id] = run
	}
	var keys []string
	for _, row := range v.Buttons {
		for _, b := range row {
			if b.Data == "" || b.URL != "" || tag == 0 {
				continue
			}
			// The key is the action's first letter (c, p, r; m for more,
			// w for wrap up), not the label's: "Continue" and "Cancel"
			// must not share one.
			k := strings.ToLower(b.Label[:1]) + strconv.Itoa(tag)
			if parts := strings.Split(b.Data, ":"); len(parts) == 3 && parts[2] != "" {
				k = parts[2][:1] + strconv.Itoa(tag)
			}
			if c.runKeys == nil {
				c.runKeys = map[string]string{}
			}
			c.runKeys[k] = b.Data
			keys = append(keys, k+" "+b.Label)
		}
	}
	parts := []string{v.Title}
	if tag > 0 {
		parts[0] = fmt.Sprintf("run %d: %s", tag, v.Title)
	}
	text := strings.Split(v.Text, "\n")
	parts = append(parts, text...)
	for _, f := range v.Fields {
		parts = append(parts, f.Value)
	}
	keyText := strings.Join(keys, "  ")
	if len(keys) > 0 {
		parts = append(parts, keyText)
	}
	line := "… " + strings.Join(parts, " | ")
	if !c.Terminal {
		// One line per change of stage or state: the first line of the
		// text without the bar, the title's state.
		key := v.Title + "|" + stageOf(text[0]) + "|" + strings.Join(text[1:], "|")
		if c.plain == nil {
			c.plain = map[string]string{}
		}
		if c.plain[id] == key {
			return
		}
		c.plain[id] = key
		// No prompt after each line: the next reply or final brings it back.
		if c.atPrompt {
			fmt.Fprintln(c.Out)
			c.atPrompt, c.owed = false, true
		}
		fmt.Fprintln(c.Out, line)
		return
	}
	// One terminal line: what does not fit is cut from the middle, never
	// the keys that act on the run.
	if len(keys) > 0 {
		line = fit("… "+strings.Join(parts[:len(parts)-1], " | "), max(20, 79-3-len([]rune(keyText)))) + " | " + keyText
	}
	line = fit(line, 79)
	for i, m := range c.above {
		if m == id && c.atPrompt {
			// Up to the line, redraw it, back to the prompt.
			fmt.Fprintf(c.Out, "\0337\033[%dA\r\033[K%s\0338", len(c.above)-i, line)
			return
		}
	}
	c.leavePrompt()
	fmt.Fprintln(c.Out, line)
	// Directly above the prompt, now or once it is written: redrawn there
	// until other output or the user's Enter moves it up.
	c.above = append(c.above, id)
	c.restorePrompt()
}

// stageOf is the "stage N/M: name" part of a progress text's first line.
func stageOf(s string) string {
	if i := strings.Index(s, "stage "); i >= 0 {
		return s[i:]
	}
	return s
}

// fit cuts s to n runes, marking the cut.
func fit(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Render writes a view as terminal text, without numbering-state: buttons are
// listed with their numbers.
func Render(w io.Writer, v bots.View) {
	(&Console{}).render(w, v, "")
}

func (c *Console) render(w io.Writer, v bots.View, prefix string) []string {
	v = bots.CleanView(v) // no escape sequence from a model reaches the terminal
	if v.Kind == bots.KindProgress {
		line := []string{v.Title, strings.ReplaceAll(v.Text, "\n", " | ")}
		for _, f := range v.Fields {
			line = append(line, f.Name+" "+f.Value)
		}
		fmt.Fprintf(w, "\n… %s\n", strings.Join(line, " | "))
	} else {
		if v.Title != "" {
			fmt.Fprintf(w, "\n== %s ==\n", v.Title)
		}
		if v.Text != "" {
			fmt.Fprintln(w, v.Text)
		}
		for _, f := range v.Fields {
			fmt.Fprintf(w, "  %s: %s\n", f.Name, strings.ReplaceAll(f.Value, "\n", "\n    "))
		}
	}
	if v.Image != nil && c.ChartDir != "" {
		if err := os.MkdirAll(c.ChartDir, 0o750); err == nil {
			p := filepath.Join(c.ChartDir, filepath.Base(v.ImageName))
			if os.WriteFile(p, v.Image, 0o640) == nil {
				fmt.Fprintf(w, "  Chart: %s\n", p)
			}
		}
	}
	var choices []string
	for _, row := range v.Buttons {
		var cells []string
		for _, b := range row {
			if b.URL != "" {
				cells = append(cells, fmt.Sprintf("%s: %s", b.Label, b.URL))
				continue
			}
			choices = append(choices, b.Data)
			cells = append(cells, fmt.Sprintf("[%s%d] %s", prefix, len(choices), b.Label))
		}
		fmt.Fprintf(w, "  %s\n", strings.Join(cells, "   "))
	}
	if v.Final && v.Notice != "" && !strings.Contains(v.Text, v.Notice) {
		fmt.Fprintln(w, v.Notice)
	}
	return choices
}

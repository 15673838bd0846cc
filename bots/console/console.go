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

// Console is one terminal user's chat.
type Console struct {
	Conv     *bots.Conversation
	User     billing.Identity
	Out      io.Writer
	ChartDir string // where final charts are written; "" = not written

	mu       sync.Mutex
	choices  []string // payloads of the latest buttons, by number-1
	lastRun  string
	messages int
}

var _ bots.Sender = (*Console)(nil)

// Limits keep a terminal readable: progress at most 4 lines a second.
var Limits = bots.Limits{PerChat: rate.Limit(4), PerChatBurst: 2}

// Chat is the console's one chat.
func (c *Console) chat() bots.Chat { return bots.Chat{Platform: Platform, ID: c.User.ExternalID} }

// Send implements bots.Sender.
func (c *Console) Send(_ context.Context, d research.Destination, v bots.View) (string, error) {
	c.print(v)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.messages++
	return strconv.Itoa(c.messages), nil
}

// Edit implements bots.Sender; a terminal cannot edit, so it prints the new state.
func (c *Console) Edit(ctx context.Context, d research.Destination, v bots.View) error {
	_, err := c.Send(ctx, d, v)
	return err
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
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
		errc <- sc.Err()
		close(lines)
	}()
	for {
		fmt.Fprint(c.Out, "> ")
		var line string
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				fmt.Fprintln(c.Out)
				return <-errc
			}
			line = strings.TrimSpace(l)
		}
		if line == "" {
			continue
		}
		if line == "quit" || line == "exit" {
			return nil
		}
		c.Handle(ctx, line)
	}
}

// Handle answers one typed line.
func (c *Console) Handle(ctx context.Context, line string) {
	inc := bots.Incoming{Identity: c.User, Chat: c.chat(), Text: line}
	if n, err := strconv.Atoi(line); err == nil {
		c.mu.Lock()
		if n < 1 || n > len(c.choices) {
			c.mu.Unlock()
			fmt.Fprintf(c.Out, "No choice %d.\n", n)
			return
		}
		inc.Text, inc.Button = "", c.choices[n-1]
		c.mu.Unlock()
	}
	for _, r := range c.Conv.Handle(ctx, inc) {
		if r.Alert != "" {
			fmt.Fprintln(c.Out, "* "+r.Alert)
		}
		if r.View.Kind == bots.KindProgress {
			// The outbox prints the run's progress; remember which run it is.
			c.mu.Lock()
			c.lastRun = runOf(r.View)
			c.mu.Unlock()
			continue
		}
		if r.View.Kind != "" || r.View.Text != "" {
			c.print(r.View)
		}
	}
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

func (c *Console) print(v bots.View) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A final view ends a run's choices (Cancel, Pause); its links are not
	// choices. Choices of a quote or a schedule on screen stay: a run that
	// ends meanwhile must not take away the Confirm being read.
	switch choices := c.render(c.Out, v); {
	case len(choices) > 0:
		c.choices = choices
	case v.Final && len(c.choices) > 0 && strings.HasPrefix(c.choices[0], "r:"):
		c.choices = nil
	}
	if v.Final {
		c.lastRun = ""
	}
}

// Render writes a view as terminal text, without numbering-state: buttons are
// listed with their numbers.
func Render(w io.Writer, v bots.View) {
	(&Console{}).render(w, v)
}

func (c *Console) render(w io.Writer, v bots.View) []string {
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
			cells = append(cells, fmt.Sprintf("[%d] %s", len(choices), b.Label))
		}
		fmt.Fprintf(w, "  %s\n", strings.Join(cells, "   "))
	}
	if v.Final && v.Notice != "" && !strings.Contains(v.Text, v.Notice) {
		fmt.Fprintln(w, v.Notice)
	}
	return choices
}

package telegramtest

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
)

// htmlTags are the tags Telegram's HTML parse mode accepts.
var htmlTags = map[string]bool{
	"b": true, "strong": true, "i": true, "em": true, "u": true, "ins": true, "s": true, "strike": true, "del": true,
	"span": true, "tg-spoiler": true, "a": true, "code": true, "pre": true, "blockquote": true, "tg-emoji": true,
}

// ParseHTML checks s the way the Bot API's HTML parse mode does (strictly:
// every <, > and & outside a tag or entity is an error, tags must be known and
// balanced) and returns the visible text.
func ParseHTML(s string) (string, error) {
	var out strings.Builder
	var stack []string
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '<':
			end := strings.IndexByte(s[i:], '>')
			if end < 0 {
				return "", fmt.Errorf("can't parse entities: unclosed start tag at byte offset %d", i)
			}
			tag := s[i+1 : i+end]
			i += end + 1
			if strings.HasPrefix(tag, "/") {
				name := strings.TrimSpace(tag[1:])
				if len(stack) == 0 || stack[len(stack)-1] != name {
					return "", fmt.Errorf("can't parse entities: unmatched end tag %q", name)
				}
				stack = stack[:len(stack)-1]
				continue
			}
			name, _, _ := strings.Cut(tag, " ")
			if !htmlTags[name] {
				return "", fmt.Errorf("can't parse entities: unsupported start tag %q", name)
			}
			stack = append(stack, name)
		case '>':
			return "", fmt.Errorf("can't parse entities: character '>' is reserved at byte offset %d", i)
		case '&':
			end := strings.IndexByte(s[i:], ';')
			if end < 0 || end > 10 {
				return "", fmt.Errorf("can't parse entities: character '&' is reserved at byte offset %d", i)
			}
			ent := s[i+1 : i+end]
			switch {
			case ent == "lt":
				out.WriteByte('<')
			case ent == "gt":
				out.WriteByte('>')
			case ent == "amp":
				out.WriteByte('&')
			case ent == "quot":
				out.WriteByte('"')
			case strings.HasPrefix(ent, "#"):
				digits, base := ent[1:], 10
				if strings.HasPrefix(digits, "x") || strings.HasPrefix(digits, "X") {
					digits, base = digits[1:], 16
				}
				n, err := strconv.ParseInt(digits, base, 32)
				if err != nil {
					return "", fmt.Errorf("can't parse entities: bad numeric entity %q", ent)
				}
				out.WriteRune(rune(n))
			default:
				return "", fmt.Errorf("can't parse entities: unsupported entity %q", ent)
			}
			i += end + 1
		default:
			out.WriteByte(c)
			i++
		}
	}
	if len(stack) > 0 {
		return "", fmt.Errorf("can't parse entities: can't find end tag corresponding to start tag %q", stack[len(stack)-1])
	}
	return out.String(), nil
}

// Len is a text's length as Telegram counts it: UTF-16 code units.
func Len(s string) int { return len(utf16.Encode([]rune(s))) }

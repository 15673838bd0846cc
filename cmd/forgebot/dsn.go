package main

import (
	"io"
	"net/url"
	"regexp"
	"strings"
)

// DATABASE_URL for PostgreSQL comes in two forms, both accepted:
//
//	postgres://user:password@host:5432/db?sslmode=disable   (URL)
//	host=127.0.0.1 port=5432 user=u password='p w' dbname=db (key=value)
//
// A DSN is printed only through redactDSN, and every message forgebot
// prints passes through redactSecret with the DSN's password, so a password
// (even one whose "@" or "/" is not percent-encoded, which parsers split in
// odd places) never reaches stderr or a log.

// kvDSNRE matches the start of a key=value DSN: a keyword, "=".
var kvDSNRE = regexp.MustCompile(`^\s*[a-z_]+\s*=`)

// isKeyValueDSN reports a PostgreSQL DSN in key=value form.
func isKeyValueDSN(s string) bool { return kvDSNRE.MatchString(s) }

// kvPair is one keyword and its value in a key=value DSN, and where the
// value sits in the string.
type kvPair struct {
	key, value string
	start, end int // the value's bytes, quotes included
}

// parseKeyValueDSN splits a key=value DSN as libpq does: values are bare
// words or single-quoted with backslash escapes. It never fails: what it
// cannot read ends the list.
func parseKeyValueDSN(s string) []kvPair {
	var out []kvPair
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return out
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		for i < len(s) && s[i] == ' ' {
			i++
		}
		start := i
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
			if i < len(s) {
				i++ // closing quote
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
		}
		out = append(out, kvPair{key: key, value: v.String(), start: start, end: i})
	}
}

// dsnPasswords returns the password a DSN carries, as written and as
// decoded (empty when there is none). It reads leniently: a URL whose
// password has an unencoded "@", "/", "?" or "#" still gives the password.
func dsnPasswords(dsn string) []string {
	var pw []string
	add := func(p string) {
		if p == "" {
			return
		}
		pw = append(pw, p)
		if d, err := url.PathUnescape(p); err == nil && d != p {
			pw = append(pw, d)
		}
		if e := url.QueryEscape(p); e != p {
			pw = append(pw, e)
		}
	}
	if isKeyValueDSN(dsn) {
		for _, kv := range parseKeyValueDSN(dsn) {
			if kv.key == "password" {
				add(kv.value)
				add(dsn[kv.start:kv.end])
			}
		}
		return pw
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		// The user info ends at the last "@" before the host: everything
		// between the first ":" and that "@" is the password, whatever it
		// contains.
		found := false
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, p, ok := strings.Cut(rest[:at], ":"); ok {
				add(p)
				found = true
				// A password with "/" or "?" may show up cut there.
				if j := strings.IndexAny(p, "/?#"); j >= 4 {
					add(p[:j])
				}
			}
		}
		if u, err := url.Parse(dsn); err == nil {
			if p, ok := u.User.Password(); ok && !found {
				add(p)
			}
			add(u.Query().Get("password"))
		}
		if _, q, ok := strings.Cut(rest, "?"); ok {
			for _, kv := range strings.Split(q, "&") {
				if k, v, ok := strings.Cut(kv, "="); ok && k == "password" {
					add(v)
				}
			}
		}
	}
	return pw
}

// redactSecret replaces every form of the DSN's password in s with xxxxx.
func redactSecret(s, dsn string) string {
	pws := dsnPasswords(dsn)
	// Longest first, so a password's prefix does not leave its tail.
	for i := range pws {
		for j := i + 1; j < len(pws); j++ {
			if len(pws[j]) > len(pws[i]) {
				pws[i], pws[j] = pws[j], pws[i]
			}
		}
	}
	for _, p := range pws {
		s = strings.ReplaceAll(s, p, "xxxxx")
	}
	return s
}

// redactDSN is the one way forgebot prints a DSN: the password becomes
// xxxxx, everything else stays so the operator can see what is wrong.
func redactDSN(dsn string) string { return redactSecret(dsn, dsn) }

// redactingWriter passes writes on with the DSN's password redacted. Every
// writer forgebot prints through writes whole lines, so a password is never
// split across two writes.
type redactingWriter struct {
	w   io.Writer
	dsn string
}

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, redactSecret(string(p), r.dsn)); err != nil {
		return 0, err
	}
	return len(p), nil
}

package discord

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// discordgo builds every REST URL from package variables computed at init
// (https://discord.com/api/v9/...), so changing EndpointDiscord later moves
// nothing. Moving the API is done below it instead: a Transport that sends
// requests for discord.com to the configured base, and a websocket Dialer that
// connects the gateway to the same host.

// apiHost is the host discordgo's endpoints name.
const apiHost = "discord.com"

// rewrite sends requests for discord.com to base (scheme, host and a path
// prefix), leaving other hosts alone.
type rewrite struct {
	base *url.URL
	next http.RoundTripper
}

func (t rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != apiHost {
		return t.next.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = t.base.Scheme, t.base.Host, ""
	if p := strings.TrimSuffix(t.base.Path, "/"); p != "" {
		r2.URL.Path = p + r.URL.Path
		if r.URL.RawPath != "" {
			r2.URL.RawPath = p + r.URL.RawPath
		}
	}
	return t.next.RoundTrip(r2)
}

// httpClient is the client discordgo uses: the configured one (or a default
// with a timeout), its transport wrapped to move the API when base is set.
func httpClient(c *http.Client, base *url.URL) *http.Client {
	out := &http.Client{Timeout: 20 * time.Second}
	if c != nil {
		cp := *c
		out = &cp
	}
	if base == nil {
		return out
	}
	next := out.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	out.Transport = rewrite{base: base, next: next}
	return out
}

// dialer connects the gateway. With base set, whatever gateway URL the API
// returns is dialled at base's host (TLS, if the gateway URL is wss, is
// checked against base's host name), so a proxy or a test fake that serves
// both REST and the gateway only needs one address.
func dialer(base *url.URL) *websocket.Dialer {
	d := &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 15 * time.Second}
	if base == nil {
		return d
	}
	port := base.Port()
	if port == "" {
		port = "80"
		if base.Scheme == "https" {
			port = "443"
		}
	}
	addr := net.JoinHostPort(base.Hostname(), port)
	nd := &net.Dialer{Timeout: 10 * time.Second}
	d.Proxy = nil
	d.NetDialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return nd.DialContext(ctx, network, addr)
	}
	d.TLSClientConfig = &tls.Config{ServerName: base.Hostname(), MinVersion: tls.VersionTLS12}
	return d
}

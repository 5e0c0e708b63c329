// Package frontdoor holds what the control plane's front doors (the HTTP
// API and the SSH gateway) share against floods: who a connection counts
// against (its source), a warning that says how often it was silenced
// instead of being written each time, and a throttle that backs off
// repeated failures per key.
//
// It does no I/O beyond the logger it is given, and never sleeps: time
// arrives through an injected clock.
package frontdoor

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Source is who a connection from addr counts against: its IPv4 address,
// or the /64 of an IPv6 one (one host is commonly given a whole /64, and
// would otherwise count as billions of sources). An address that is not
// IP (a Unix socket, a test's pipe) is its own source.
func Source(addr net.Addr) string {
	if t, ok := addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return sourceOf(ip)
		}
	}
	return SourceOf(addr.String())
}

// SourceOf is Source for an address written as "HOST:PORT" or "HOST" (an
// http.Request's RemoteAddr).
func SourceOf(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return sourceOf(ip)
}

func sourceOf(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// Warner writes a warning at most once per Every; the warnings it
// silenced meanwhile are counted and the next one written says how many
// ("suppressed"). A flood of refused connections then costs a line per
// interval, not one each.
type Warner struct {
	Log   *slog.Logger
	Msg   string
	Every time.Duration // default 10s
	Now   func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Warn writes the warning with args, or counts it when one was written
// less than Every ago. It reports whether it wrote.
func (w *Warner) Warn(args ...any) bool {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	every := w.Every
	if every == 0 {
		every = 10 * time.Second
	}
	w.mu.Lock()
	t := now()
	if !w.last.IsZero() && t.Sub(w.last) < every {
		w.suppressed++
		w.mu.Unlock()
		return false
	}
	n := w.suppressed
	w.last, w.suppressed = t, 0
	w.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n, "interval", every.String())
	}
	if w.Log != nil {
		w.Log.Warn(w.Msg, args...)
	}
	return true
}

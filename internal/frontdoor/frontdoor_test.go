package frontdoor_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool/internal/frontdoor"
)

// clock is a test's time: it moves only when the test advances it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSource(t *testing.T) {
	for _, tc := range []struct{ name, remote, want string }{
		{"ipv4 with port", "192.0.2.7:4242", "192.0.2.7"},
		{"ipv4 alone", "192.0.2.7", "192.0.2.7"},
		{"ipv4-mapped", "[::ffff:192.0.2.7]:22", "192.0.2.7"},
		{"ipv6 counts as its /64", "[2001:db8:1:2:aaaa::1]:22", "2001:db8:1:2::/64"},
		{"ipv6 zone dropped", "[fe80::1%eth0]:22", "fe80::/64"},
		{"not an address", "pipe", "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := frontdoor.SourceOf(tc.remote); got != tc.want {
				t.Errorf("SourceOf(%q) = %q, want %q", tc.remote, got, tc.want)
			}
		})
	}
	a := &net.TCPAddr{IP: net.ParseIP("2001:db8::5"), Port: 1}
	if got, want := frontdoor.Source(a), "2001:db8::/64"; got != want {
		t.Errorf("Source(%v) = %q, want %q", a, got, want)
	}
}

func TestWarnerWritesOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	c := newClock()
	w := &frontdoor.Warner{Log: slog.New(slog.NewTextHandler(&buf, nil)), Msg: "refused", Every: time.Second, Now: c.Now}
	for range 1000 {
		w.Warn("remote", "192.0.2.1")
	}
	c.Advance(time.Second)
	if !w.Warn("remote", "192.0.2.2") {
		t.Fatal("Warn after the interval wrote nothing")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[1], "suppressed=999") {
		t.Errorf("second line %q does not count the 999 silenced", lines[1])
	}
}

func TestThrottleBacksOffAndLeaks(t *testing.T) {
	c := newClock()
	th := &frontdoor.Throttle{Free: 3, Base: time.Second, Max: 8 * time.Second, Leak: time.Minute, Now: c.Now}
	for i := range 3 {
		if d := th.Attempt("ada"); d != 0 {
			t.Fatalf("attempt %d waited %v within the free attempts", i+1, d)
		}
	}
	// The 4th is let through and closes the door for Base; the next ones
	// double it, up to Max.
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		if d := th.Attempt("ada"); d != 0 {
			t.Fatalf("attempt at an open door refused for %v", d)
		}
		if got := th.Attempt("ada"); got != want {
			t.Fatalf("the next attempt: wait %v, want %v", got, want)
		}
		c.Advance(want)
	}
	if d := th.Attempt("grace"); d != 0 {
		t.Errorf("another key waited %v", d)
	}
	// An hour of quiet forgets every attempt.
	c.Advance(time.Hour)
	for i := range 4 {
		if d := th.Attempt("ada"); d != 0 {
			t.Fatalf("attempt %d after an hour waited %v", i+1, d)
		}
	}
	th.Reset("ada")
	for i := range 3 {
		if d := th.Attempt("ada"); d != 0 {
			t.Fatalf("attempt %d after Reset waited %v", i+1, d)
		}
	}
	th.Forgive("ada")
	if d := th.Attempt("ada"); d != 0 {
		t.Errorf("an attempt after one forgiven waited %v", d)
	}
}

func TestThrottleMemoryIsBounded(t *testing.T) {
	c := newClock()
	th := &frontdoor.Throttle{Free: 1, MaxKeys: 100, Now: c.Now}
	for i := range 10000 {
		th.Attempt(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if got := th.Len(); got != 100 {
		t.Errorf("Len = %d after 10000 keys, want the cap 100", got)
	}
}

package agent

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// TestShareWatchDoesNotWaitOnAHungShare: a look at the share that never
// comes back (a hung network mount) costs a heartbeat nothing, and is
// reported once it has taken shareHangAfter; the first look that comes
// back clears it.
func TestShareWatchDoesNotWaitOnAHungShare(t *testing.T) {
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	release := make(chan struct{})
	looks := 0
	w := &shareWatch{now: now, look: func() (dspool.Usage, string) {
		mu.Lock()
		looks++
		n := looks
		mu.Unlock()
		if n == 2 {
			<-release // the share hangs on the second look
		}
		return dspool.Usage{ShareSize: dspool.Bytes(n)}, ""
	}}
	u, why := w.state(time.Second)
	if u.ShareSize != 1 || why != "" {
		t.Fatalf("first look: %v %q", u.ShareSize, why)
	}
	advance(2 * time.Second)
	start := time.Now()
	for i := 0; i < 3; i++ {
		u, why = w.state(time.Second)
		advance(time.Second)
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Fatalf("state waited on a hung look for %s", time.Since(start))
	}
	if u.ShareSize != 1 || why != "" {
		t.Fatalf("while the look hangs for less than %s: %v %q", shareHangAfter, u.ShareSize, why)
	}
	advance(shareHangAfter)
	if _, why = w.state(time.Second); !strings.Contains(why, "has not answered for") {
		t.Fatalf("a look hung for %s: %q", shareHangAfter+3*time.Second, why)
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if u, why = w.state(time.Second); u.ShareSize >= 2 && why == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the share answered: %v %q", u.ShareSize, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package backoff_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dspool/dspool/internal/backoff"
)

func TestWindowsDoubleUpToMax(t *testing.T) {
	b := &backoff.Backoff{Min: 100 * time.Millisecond, Max: time.Second, Rand: func() float64 { return 0.999999 }}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		d := b.Next()
		w *= time.Millisecond
		if b.Window() != w || d >= w || d < w*99/100 {
			t.Fatalf("retry %d: delay %s in window %s, want just under %s", i, d, b.Window(), w)
		}
	}
	b.Reset()
	if d := b.Next(); d >= 100*time.Millisecond {
		t.Errorf("after Reset: delay %s, want under the first window 100ms", d)
	}
}

// TestClientsThatFailedTogetherSpread: a thousand clients that fail at the
// same moment retry spread over the window, not in lockstep.
func TestClientsThatFailedTogetherSpread(t *testing.T) {
	src := rand.New(rand.NewPCG(1, 2))
	const clients, buckets = 1000, 20
	for retry := 0; retry < 4; retry++ {
		var window time.Duration
		counts := make([]int, buckets)
		bs := make([]*backoff.Backoff, clients)
		for i := range bs {
			bs[i] = &backoff.Backoff{Rand: src.Float64}
			for r := 0; r <= retry; r++ {
				d := bs[i].Next()
				if r == retry {
					window = bs[i].Window()
					counts[int(d*buckets/window)]++
				}
			}
		}
		// Uniform: 50 per bucket; lockstep would put them all in one.
		for i, n := range counts {
			if n < 20 || n > 90 {
				t.Errorf("retry %d: %d of %d clients in the %d/%d of the %s window, want about %d", retry, n, clients, i+1, buckets, window, clients/buckets)
			}
		}
	}
}

func TestZeroValue(t *testing.T) {
	var b backoff.Backoff
	for i := 0; i < 20; i++ {
		if d := b.Next(); d < 0 || d >= 5*time.Second {
			t.Fatalf("retry %d: delay %s, want in [0, 5s)", i, d)
		}
	}
	if b.Window() != 5*time.Second {
		t.Errorf("window after 20 retries: %s, want the default cap 5s", b.Window())
	}
}

// Package backoff spaces out retries: capped exponential backoff with full
// jitter, so that many clients that failed at the same moment (a thousand
// agents whose control plane restarted) come back spread over a window
// instead of in lockstep. It only computes delays; the caller sleeps.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff computes the delays before successive retries. The zero value
// retries between 0 and 100ms first, doubling the window up to 5s.
type Backoff struct {
	// Min is the first window (default 100ms); Max caps it (default 5s).
	Min, Max time.Duration
	// Rand returns a number in [0, 1) (default math/rand/v2's); tests give
	// a seeded one.
	Rand func() float64

	window time.Duration
}

// Next returns the delay before the next retry: a uniformly random duration
// in [0, window), where the window is Min at first and doubles at each call
// up to Max ("full jitter": clients that failed together spread over the
// whole window rather than bunching at its end).
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 5 * time.Second
	}
	hi = max(hi, lo)
	if b.window == 0 {
		b.window = lo
	} else {
		b.window = min(b.window*2, hi)
	}
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return time.Duration(r() * float64(b.window))
}

// Window is the window the last Next drew from (0 before the first).
func (b *Backoff) Window() time.Duration { return b.window }

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.window = 0 }

package server

import (
	"testing"
	"time"
)

func TestBatchSizes(t *testing.T) {
	b := newBatcher()
	for _, tt := range []struct {
		took time.Duration
		want int
	}{
		{time.Millisecond, 2 * pruneStart},
		{pruneTarget, 2 * pruneStart}, // about right: kept
		{3 * pruneTarget, pruneStart},
		{time.Second, pruneStart / 2},
		{time.Second, pruneStart / 4},
		{time.Second, pruneStart / 8},
		{time.Second, pruneMin},
		{time.Second, pruneMin},
	} {
		b.took(tt.took)
		if b.size != tt.want {
			t.Fatalf("after a batch of %v: size %d, want %d", tt.took, b.size, tt.want)
		}
	}
	for range 20 {
		b.took(0)
	}
	if b.size != pruneMax || b.longest != time.Second {
		t.Errorf("after quick batches: size %d, longest %v; want %d, 1s", b.size, b.longest, pruneMax)
	}
}

package lazyregexp_test

import (
	"testing"

	"github.com/dspool/dspool/internal/lazyregexp"
)

func TestLazy(t *testing.T) {
	re := lazyregexp.New(`^s-([a-z0-9]+)$`)
	if !re.MatchString("s-abc") || re.MatchString("x-abc") {
		t.Error("MatchString")
	}
	if got := re.FindStringSubmatch("s-abc"); len(got) != 2 || got[1] != "abc" {
		t.Errorf("FindStringSubmatch: got %q", got)
	}
}

// TestCompiledInTests checks that a bad pattern fails in a test binary at
// once, not at its first use.
func TestCompiledInTests(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a bad pattern did not panic in a test")
		}
	}()
	lazyregexp.New(`(`)
}

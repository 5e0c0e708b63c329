package agent

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestLockState: a second agent on a state directory in use is refused,
// with a message that names the agent holding it; once that one has gone,
// the directory is free again.
func TestLockState(t *testing.T) {
	dir := t.TempDir()
	first, err := lockState(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockState(dir, nil)
	if err == nil {
		t.Fatal("a second lock on a state directory in use was granted")
	}
	for _, want := range []string{"another agent (pid " + strconv.Itoa(os.Getpid()) + ")", dir, "--state"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	first.Close()
	again, err := lockState(dir, nil)
	if err != nil {
		t.Fatalf("the state directory is still locked after its agent went: %v", err)
	}
	again.Close()
}

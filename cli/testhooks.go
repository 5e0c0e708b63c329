//go:build dspool_testhooks

package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/dspool/dspool/provider/local"
)

// The end-to-end tests build dspool with these hooks (the build tag
// dspool_testhooks); a release has none of them.
func init() {
	localTestHooks = func(o *local.Options) {
		// DSPOOL_TEST_PAUSE_AFTER_AGENT_START=NODE: `dspool up` stops for
		// good right after it has started NODE's agent, before it has
		// recorded it, where a test kills it.
		if node := os.Getenv("DSPOOL_TEST_PAUSE_AFTER_AGENT_START"); node != "" {
			o.Started = func(name string, pid int) bool {
				if name != node {
					return false
				}
				fmt.Fprintf(os.Stderr, "test hook: paused after starting the agent of %s (pid %d), before recording it\n", name, pid)
				for {
					time.Sleep(time.Hour)
				}
			}
		}
	}
}

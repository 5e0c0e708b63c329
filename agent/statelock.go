package agent

import (
	"os"

	"github.com/dspool/dspool/internal/agentlock"
)

// lockState takes the lock of the state directory dir for the agent's
// life: one agent per node identity, since a second one would fight the
// first over its node's attempts and cgroups. That matters most where
// agents outlive what started them (`dspool up` adopts the agents a crashed
// run left): a second agent started by hand, or by mistake, is refused
// here, naming the one that holds the directory. handed is the lock the
// process that started the agent took for it and handed over (nil if
// none): the agent keeps it, and records itself for that starter's next run
// (internal/agentlock). The lock goes with the process, however it ends.
func lockState(dir string, handed *os.File) (*os.File, error) {
	return agentlock.Take(dir, handed)
}

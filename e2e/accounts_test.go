package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// TestNewUserOnTwoAgents starts a new user's first jobs on two agents of
// one machine at the same moment: both agents create the user's OS account,
// and every job must still run.
func TestNewUserOnTwoAgents(t *testing.T) {
	requireRoot(t)
	up := startUp(t, upConfig{Nodes: 2, UIDBase: uidBase(7)})
	nodes := up.waitNodes(t, "default", 2)
	whole := nodes[0].Inventory.CPUs // one job per node: the two start together
	cl := up.api(up.adminToken(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := 1; round <= 3; round++ {
		name := fmt.Sprintf("e2erace7-%d", round)
		_, token := up.createUser(t, name)
		user := up.api(token)
		ids := make([]int64, 4)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j, err := user.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, CPUs: whole, Memory: 64 << 20}, 0)
				if err != nil {
					t.Errorf("submit: %v", err)
					return
				}
				ids[i] = j.ID
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id == 0 {
				t.FailNow()
			}
			j := waitAPIJob(t, ctx, cl, id)
			if j.State != dspool.JobSucceeded {
				t.Errorf("user %s: job %d on node %s: state %s, reason %s, message %q; want succeeded",
					name, id, j.Node, j.State, j.Reason, j.Message)
			}
		}
	}
}

// waitAPIJob long-polls a job through the API until it has finished.
func waitAPIJob(t *testing.T, ctx context.Context, cl *api.Client, id int64) *dspool.Job {
	t.Helper()
	for {
		j, err := cl.WaitJob(ctx, id, 30*time.Second)
		if err != nil {
			t.Fatalf("wait for job %d: %v", id, err)
		}
		if j.State.Terminal() {
			return j
		}
	}
}

package e2e_test

import (
	"encoding/csv"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

// TestUsage: a user's job in `dspool up` shows in `dspool usage` as their
// job time, and the local node as the default pool's node time.
func TestUsage(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(31)})
	alice, token := up.createUser(t, "e2eusage1")
	env := up.userEnv(token)
	if j, errs, code := submitWait(t, env, "--cpus", "0.5", "--memory", "64MiB", "--", "sleep", "0.3"); code != 0 {
		t.Fatalf("job: exit code %d, state %s, message %q (stderr: %s)", code, j.State, j.Message, errs)
	}

	var byUser dspool.UsageReport
	cliJSON(t, up.env(), &byUser, "usage", "--by", "user")
	var found *dspool.UserUsage
	for i, u := range byUser.Users {
		if u.User == alice.Name {
			found = &byUser.Users[i]
		}
	}
	if found == nil || found.JobSeconds <= 0 || found.CPUSeconds <= 0 {
		t.Errorf("usage --by user as the admin: got %+v, want job and cpu seconds for %s", byUser.Users, alice.Name)
	}
	var mine dspool.UsageReport
	cliJSON(t, env, &mine, "usage")
	if len(mine.Users) != 1 || mine.Users[0].User != alice.Name || mine.Users[0].JobSeconds != found.JobSeconds {
		t.Errorf("usage as %s: got %+v, want only their own row", alice.Name, mine.Users)
	}

	var byPool dspool.UsageReport
	cliJSON(t, env, &byPool, "usage", "--by", "pool", "--since", "1h")
	ok := false
	for _, p := range byPool.Pools {
		ok = ok || (p.Pool == dspool.DefaultPool && p.NodeSeconds > 0 && p.NodeHours > 0)
	}
	if !ok {
		t.Errorf("usage --by pool: got %+v, want node seconds for pool %s", byPool.Pools, dspool.DefaultPool)
	}

	for _, by := range []string{"user", "pool"} {
		out := cliOK(t, up.env(), "usage", "--by", by, "-o", "csv")
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil || len(recs) < 2 || recs[0][0] != by {
			t.Errorf("usage --by %s -o csv: %v, records %q; want a header starting %q and rows", by, err, recs, by)
		}
	}
}

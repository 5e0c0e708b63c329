package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dspool/dspool"
)

// TestBackupAndRestore backs the store up while `dspool up` runs and takes
// submissions, restores it into a new data directory with the files the
// guide says to copy beside it, starts `dspool up` there, and finds the
// users, pools, jobs and secrets as they were: the secret still opens in
// a job.
func TestBackupAndRestore(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(170)})
	admin := up.env()
	_, token := up.createUser(t, "e2ebak170")
	ada := up.userEnv(token)
	applyPool(t, up, "name: idle\nprovider: static\nnode: {cpus: 1, memory: 1GiB}\ncount: 0\n")
	value := make([]byte, 16)
	_, _ = rand.Read(value)
	secret := hex.EncodeToString(value)
	cmdIn(t, ada, secret+"\n", "secret", "set", "hf-token")
	ran, _, code := submitWait(t, ada, "--cpus", "0.1", "--secret", "hf-token", "--", "sh", "-c", `printf %s "$HF_TOKEN" | sha256sum`)
	if code != 0 || ran.State != dspool.JobSucceeded {
		t.Fatalf("the job with the secret: exit %d, %s", code, ran.State)
	}
	queued := submit(t, ada, "--pool", "idle", "--", "true")

	// Submissions go on while the copy is made.
	cl := up.api(token)
	var wg sync.WaitGroup
	var during atomic.Int64
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := cl.SubmitJob(context.Background(), &dspool.JobSpec{Pool: "idle", Command: []string{"true"}}, 0); err == nil {
				during.Add(1)
			}
		}
	}()
	file := filepath.Join(tempDir(t), "dspool.db")
	out, errs, code := cli(t, admin, "backup", file)
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "backed up the store of "+up.URL+" to "+file) || !strings.Contains(errs, "secrets.key") {
		t.Fatalf("backup while running: exit %d\n%s%s", code, out, errs)
	}
	if during.Load() == 0 {
		t.Log("no submission was answered while the backup was made")
	}
	wantJobs := listIDs(t, ada, "job", "list", "--limit", "10000")
	up.Stop()

	// Into a new directory, with what the guide says to copy beside it.
	data := filepath.Join(tempDir(t), "restored")
	out = cliOK(t, nil, "restore", file, "--data", data)
	if !strings.Contains(out, "secrets.key: its 1 secret") || !strings.Contains(out, "then: dspool up --data "+data) {
		t.Errorf("restore says:\n%s\nwant it to name the key its secret needs, and how to start", out)
	}
	if _, errs, code := cli(t, nil, "restore", file, "--data", data); code == 0 || !strings.Contains(errs, filepath.Join(data, "dspool.db")+" exists") {
		t.Errorf("restore over the restored store: exit %d, %q; want a refusal naming it", code, errs)
	}
	for _, f := range []string{"secrets.key", "tls", "ssh_host_ed25519_key"} {
		if b, err := exec.Command("cp", "-a", filepath.Join(up.Data, f), data+"/").CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v %s", f, err, b)
		}
	}
	again := startUp(t, upConfig{UIDBase: uidBase(170), Data: data})
	ada = again.userEnv(token) // her token is in the store

	var users []*dspool.User
	cliJSON(t, again.env(), &users, "user", "list")
	if !slices.ContainsFunc(users, func(u *dspool.User) bool { return u.Name == "e2ebak170" }) {
		t.Errorf("restored users: %+v; want e2ebak170", users)
	}
	if out := cliOK(t, again.env(), "pool", "list"); !strings.Contains(out, "idle") {
		t.Errorf("restored pools:\n%s\nwant idle", out)
	}
	got := listIDs(t, ada, "job", "list", "--limit", "10000")
	// Jobs answered while the copy was made may or may not be in it; all
	// those before it are.
	if len(got) < len(wantJobs)-int(during.Load()) || !slices.Contains(got, ran.ID) || !slices.Contains(got, queued) {
		t.Errorf("restored jobs: %v; want those before the backup (%v), at most the %d submitted during it missing", got, wantJobs, during.Load())
	}
	if j := job(t, ada, ran.ID); j.State != dspool.JobSucceeded || len(j.Secrets) != 1 {
		t.Errorf("restored job %d: %s, secrets %v", ran.ID, j.State, j.Secrets)
	}
	if out := cliOK(t, ada, "secret", "list"); !strings.Contains(out, "hf-token") {
		t.Errorf("restored secrets:\n%s\nwant hf-token", out)
	}
	// The secret still opens: a new job gets its value.
	after, _, code := submitWait(t, ada, "--cpus", "0.1", "--secret", "hf-token", "--", "sh", "-c", `printf %s "$HF_TOKEN" | sha256sum`)
	if code != 0 || after.State != dspool.JobSucceeded {
		t.Fatalf("a job with the restored secret: exit %d, %s (%s)", code, after.State, after.Message)
	}
	logs := cliOK(t, ada, "job", "logs", itoa(after.ID))
	if want := sha256hex(secret); !strings.Contains(logs, want) {
		t.Errorf("the job saw a value whose hash is %q; want %s", strings.TrimSpace(logs), want)
	}
	if b, err := os.ReadFile(filepath.Join(data, "secrets.key")); err != nil || len(b) == 0 {
		t.Errorf("the copied key: %v", err)
	}
}

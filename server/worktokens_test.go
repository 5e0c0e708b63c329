package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

// TestWorkTokens: a job gets a token of its user in DSPOOL_TOKEN, with the
// server in DSPOOL_SERVER; the token submits and reads jobs, manages no
// account, is not in the job's record, and stops working when the attempt
// ends. A token changed in any way is not recognised.
func TestWorkTokens(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 48300})
	ctx := context.Background()
	ada, err := p.DB.CreateUser(ctx, "ada483", false)
	if err != nil {
		t.Fatal(err)
	}
	a := p.ClientFor(ada)
	// The job hands its variables to the test on the share and runs until
	// the test says it may end.
	j := submit(t, a, dspool.JobSpec{Command: []string{"sh", "-c",
		`printf '%s\n%s\n%s\n' "$DSPOOL_TOKEN" "$DSPOOL_SERVER" "$DSPOOL_CA" > env.txt; while [ ! -e done ]; do sleep 0.05; done`}})
	dir := filepath.Join(p.Share, "jobs", strconv.FormatInt(j.ID, 10))
	var lines []string
	p.Eventually(20*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "env.txt"))
		lines = strings.Split(string(b), "\n")
		return err == nil && len(lines) == 4
	}, "job %d to write its environment", j.ID)
	tok, srv := lines[0], lines[1]
	if !strings.HasPrefix(tok, "dspw_") || srv == "" || lines[2] != "" {
		t.Fatalf("DSPOOL_TOKEN %q, DSPOOL_SERVER %q, DSPOOL_CA %q: want a work token, the agent's server and no CA (plain HTTP)", tok, srv, lines[2])
	}
	w := &api.Client{Server: srv, Token: tok}
	if u, err := w.WhoAmI(ctx); err != nil || u.Name != ada.Name {
		t.Fatalf("whoami with the job's token: %+v, %v; want %s", u, err, ada.Name)
	}
	inner, err := w.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}}, 0)
	if err != nil || inner.User != ada.Name {
		t.Fatalf("submit with the job's token: %+v, %v", inner, err)
	}
	if got := p.Wait(a, inner.ID); got.State != dspool.JobSucceeded {
		t.Fatalf("the job submitted with the job's token: %s (%s)", got.State, got.Message)
	}
	// It cannot make a token, which would outlive the job.
	_, err = w.CreateToken(ctx, "")
	if dspool.ErrorCode(err) != dspool.EForbidden || !strings.Contains(err.Error(), "job "+strconv.FormatInt(j.ID, 10)+" attempt 1") {
		t.Fatalf("token create with the job's token: %v; want forbidden, naming the job's attempt", err)
	}
	shown, err := a.Job(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range shown.Env {
		if strings.Contains(v, tok) || strings.HasPrefix(k, "DSPOOL_") {
			t.Fatalf("the job's record holds its token in env %s", k)
		}
	}

	// Changed anywhere, it is not recognised: its MAC, the user it names,
	// the attempt it names.
	for _, bad := range []string{tok[:len(tok)-2] + "AA", strings.Replace(tok, ".ada483.", ".admin48300.", 1),
		strings.Replace(tok, "."+strconv.FormatInt(j.ID, 10)+".1.", "."+strconv.FormatInt(j.ID, 10)+".2.", 1)} {
		if bad == tok {
			t.Fatalf("the token %q has not the expected form", tok)
		}
		_, err := (&api.Client{Server: srv, Token: bad}).WhoAmI(ctx)
		if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "not recognised") {
			t.Fatalf("a changed token %q: %v; want unauthorized, not recognised", bad, err)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := p.Wait(a, j.ID); got.State != dspool.JobSucceeded {
		t.Fatalf("job %d: %s (%s)", j.ID, got.State, got.Message)
	}
	_, err = w.WhoAmI(ctx)
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "has ended") {
		t.Fatalf("the job's token after the job: %v; want unauthorized, saying its attempt has ended", err)
	}
}

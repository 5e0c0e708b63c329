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
	j, tok, srv, end := workJob(t, p, a)
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

	// An admin's job acts as no admin.
	aj, atok, _, aend := workJob(t, p, p.Admin)
	aw := &api.Client{Server: srv, Token: atok}
	if _, err := aw.Jobs(ctx, api.JobQuery{AllUsers: true}); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Errorf("every user's jobs with the token of an admin's job: %v; want forbidden", err)
	}
	if _, err := aw.Job(ctx, j.ID); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("another user's job with the token of an admin's job: %v; want not found", err)
	}
	aend()
	p.Wait(p.Admin, aj.ID)

	end()
	if got := p.Wait(a, j.ID); got.State != dspool.JobSucceeded {
		t.Fatalf("job %d: %s (%s)", j.ID, got.State, got.Message)
	}
	_, err = w.WhoAmI(ctx)
	if dspool.ErrorCode(err) != dspool.EUnauthorized || !strings.Contains(err.Error(), "has ended") {
		t.Fatalf("the job's token after the job: %v; want unauthorized, saying its attempt has ended", err)
	}
}

// workJob submits a job with c that hands its DSPOOL_TOKEN and
// DSPOOL_SERVER to the test on the share, and runs until end is called.
func workJob(t *testing.T, p *dspooltest.Pool, c *api.Client) (j *dspool.Job, token, server string, end func()) {
	t.Helper()
	j = submit(t, c, dspool.JobSpec{CPUs: 100, Command: []string{"sh", "-c",
		`printf '%s\n%s\n%s\n' "$DSPOOL_TOKEN" "$DSPOOL_SERVER" "$DSPOOL_CA" > env.txt; while [ ! -e done ]; do sleep 0.05; done`}})
	dir := filepath.Join(p.Share, "jobs", strconv.FormatInt(j.ID, 10))
	var lines []string
	p.Eventually(20*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "env.txt"))
		lines = strings.Split(string(b), "\n")
		return err == nil && len(lines) == 4
	}, "job %d to write its environment", j.ID)
	if !strings.HasPrefix(lines[0], "dspw_") || lines[1] == "" || lines[2] != "" {
		t.Fatalf("DSPOOL_TOKEN %q, DSPOOL_SERVER %q, DSPOOL_CA %q: want a work token, the agent's server and no CA (plain HTTP)", lines[0], lines[1], lines[2])
	}
	return j, lines[0], lines[1], func() {
		if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

package server_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/secrets"
	"github.com/dspool/dspool/store"
)

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "canary-" + hex.EncodeToString(b)
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// proveJob prints what the job saw of its secrets without printing them:
// hashes of the variable and of the file, the file's mode and owner, and
// its directory's.
const proveJob = `set -e
printf '%s' "$CANARY" | sha256sum | cut -d' ' -f1
sha256sum < "$DSPOOL_SECRETS_DIR/canary" | cut -d' ' -f1
stat -c '%a %u' "$DSPOOL_SECRETS_DIR/canary" "$DSPOOL_SECRETS_DIR"
echo "$DSPOOL_SECRETS_DIR"`

func jobLog(t *testing.T, p *dspooltest.Pool, id int64) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Share, "jobs", strconv.FormatInt(id, 10), "attempt-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestSecretsReachJobsAlone(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 46400})
	ctx := context.Background()
	ada, err := p.DB.CreateUser(ctx, "ada46", false)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := p.DB.CreateUser(ctx, "bob46", false)
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.ClientFor(ada), p.ClientFor(bob)
	value := randomSecret(t)
	s, err := a.SetSecret(ctx, "canary", api.SecretSet{Value: []byte(value)})
	if err != nil || s.Name != "canary" || s.User != "ada46" {
		t.Fatalf("set: %+v %v", s, err)
	}

	spec := dspool.JobSpec{Command: []string{"sh", "-c", proveJob},
		Secrets: []dspool.SecretUse{{Secret: "canary"}, {Secret: "canary", File: true}}}
	j := p.Wait(a, submit(t, a, spec).ID)
	out := jobLog(t, p, j.ID)
	if j.State != dspool.JobSucceeded || len(out) != 5 {
		t.Fatalf("job %s (%s): %q", j.State, j.Message, out)
	}
	uid := os.Geteuid()
	if uid == 0 {
		uid = ada.UID
	}
	want := []string{sha(value), sha(value), "400 " + strconv.Itoa(uid), "700 " + strconv.Itoa(uid)}
	if strings.Join(out[:4], "|") != strings.Join(want, "|") {
		t.Errorf("job saw %q, want %q", out[:4], want)
	}
	dir := out[4]
	if strings.HasPrefix(dir, p.Share) {
		t.Errorf("secrets directory %s is on the share", dir)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
		t.Errorf("the attempt's runtime directory is still there after it ended: %v", err)
	}

	t.Run("the job and every answer hold names only", func(t *testing.T) {
		d, err := a.Job(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		l, err := a.Secrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []any{d, l} {
			b, _ := json.Marshal(v)
			if strings.Contains(string(b), value) {
				t.Errorf("an answer holds the value: %s", b)
			}
		}
		if len(d.Secrets) != 2 || d.Secrets[0].Secret != "canary" || d.Secrets[0].Env != "CANARY" {
			t.Errorf("job secrets %+v", d.Secrets)
		}
		if len(l) != 1 || l[0].LastReadAt == nil {
			t.Errorf("secret list %+v: want canary, read", l)
		}
	})

	t.Run("another user can neither see nor use nor delete it", func(t *testing.T) {
		if l, err := b.Secrets(ctx); err != nil || len(l) != 0 {
			t.Errorf("bob's list: %+v %v, want empty", l, err)
		}
		_, err := b.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, Secrets: []dspool.SecretUse{{Secret: "canary"}}}, 0)
		if e := asError(err); e == nil || e.Code != dspool.EInvalid || e.Field != "secrets[0].secret" {
			t.Errorf("bob submits with ada's secret: %v, want invalid secrets[0].secret", err)
		}
		if err := b.DeleteSecret(ctx, "canary", ""); dspool.ErrorCode(err) != dspool.ENotFound {
			t.Errorf("bob deletes ada's secret: %v, want not found", err)
		}
		if _, err := b.RotateSecretsKey(ctx); dspool.ErrorCode(err) != dspool.EForbidden {
			t.Errorf("bob rotates the key: %v, want forbidden", err)
		}
	})

	t.Run("an unknown secret is refused at submit", func(t *testing.T) {
		_, err := a.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, Secrets: []dspool.SecretUse{{Secret: "canary"}, {Secret: "nope", File: true}}}, 0)
		if e := asError(err); e == nil || e.Code != dspool.EInvalid || e.Field != "secrets[1].secret" || !strings.Contains(e.Message, "nope") {
			t.Errorf("got %v, want invalid secrets[1].secret naming nope", err)
		}
	})

	t.Run("every write and read is audited, by name", func(t *testing.T) {
		entries, err := p.DB.Audit(ctx, store.AuditFilter{Action: "secret"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			b, _ := json.Marshal(e)
			if strings.Contains(string(b), value) {
				t.Errorf("audit entry holds the value: %s", b)
			}
			got = append(got, e.Actor+" "+e.Action+" "+e.Target+" "+e.Detail)
		}
		write := "ada46 secret.write secret canary created"
		reads := []string{
			"ada46 secret.read secret canary job " + strconv.FormatInt(j.ID, 10) + " attempt 1 on node " + j.Node + " (env CANARY)",
			"ada46 secret.read secret canary job " + strconv.FormatInt(j.ID, 10) + " attempt 1 on node " + j.Node + " (file canary)",
		}
		// Each sending of the attempt to its node reads its secrets: the
		// push, and a heartbeat that began before the agent had it, which
		// sends it again (the agent starts it once). Either way every read
		// names the attempt and its node, and the write comes first.
		n := map[string]int{}
		for _, g := range got {
			if strings.Contains(g, " secret.read ") {
				n[g]++
				if !slices.Contains(reads, g) {
					t.Errorf("audit: a read of another kind: %s", g)
				}
			}
		}
		if len(got) == 0 || got[0] != write || n[reads[0]] == 0 || n[reads[0]] != n[reads[1]] {
			t.Errorf("audit:\n%s\nwant %q first, then as many of each of:\n%s", strings.Join(got, "\n"), write, strings.Join(reads, "\n"))
		}
	})
}

func asError(err error) *dspool.Error {
	var e *dspool.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// A secret deleted between submission and start stops the job at start,
// saying which; the value of a secret is read at each start.
func TestSecretGoneBeforeStart(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 46100})
	ctx := context.Background()
	if _, err := p.Admin.SetSecret(ctx, "token", api.SecretSet{Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admin.SetSecret(ctx, "bin", api.SecretSet{Value: []byte("a\x00b")}); err != nil {
		t.Fatal(err)
	}
	gone := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}, Secrets: []dspool.SecretUse{{Secret: "token"}}}).ID
	if err := p.Admin.DeleteSecret(ctx, "token", ""); err != nil {
		t.Fatal(err)
	}
	nul := submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}, Secrets: []dspool.SecretUse{{Secret: "bin"}}}).ID
	file := submit(t, p.Admin, dspool.JobSpec{Command: []string{"sh", "-c", `od -c "$DSPOOL_SECRETS_DIR/bin" | head -1`},
		Secrets: []dspool.SecretUse{{Secret: "bin", File: true}}}).ID
	p.AddAgent(dspool.DefaultPool, agent.Config{CPUs: 2000, Memory: 2 << 30})
	for _, c := range []struct {
		id   int64
		want string
	}{{gone, "secret token: you have no secret named token"}, {nul, "secret bin holds a NUL byte"}} {
		j := p.Wait(p.Admin, c.id)
		if j.State != dspool.JobFailed || j.Reason != dspool.ReasonStartError || !strings.Contains(j.Message, c.want) {
			t.Errorf("job %d: %s %s %q, want failed start_error saying %q", c.id, j.State, j.Reason, j.Message, c.want)
		}
		// The log says it too, where users look first.
		if out := jobLog(t, p, c.id); !strings.HasPrefix(out[0], "dspool: the job could not start: ") || !strings.Contains(out[0], c.want) {
			t.Errorf("job %d's log: %q, want the reason it could not start", c.id, out)
		}
	}
	j := p.Wait(p.Admin, file)
	if out := jobLog(t, p, file); j.State != dspool.JobSucceeded || !strings.Contains(out[0], `a  \0   b`) {
		t.Errorf("binary secret as a file: %s %q", j.State, out)
	}
}

// Rotation re-encrypts every secret under a new key: they still reach
// jobs, and the old key opens none of them.
func TestRotateSecretsKey(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 46200})
	ctx := context.Background()
	value := randomSecret(t)
	if _, err := p.Admin.SetSecret(ctx, "canary", api.SecretSet{Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(filepath.Dir(p.Share), "secrets.key")
	old, err := secrets.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Admin.RotateSecretsKey(ctx)
	if err != nil || r.Secrets != 1 || r.KeyID == old.ID() {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	next, err := secrets.ReadKeyFile(keyFile)
	if err != nil || next.ID() != r.KeyID {
		t.Fatalf("key file after rotation: %v %v, want %s", next, err, r.KeyID)
	}
	all, err := p.DB.SecretsOf(ctx, "admin46200", nil)
	if err != nil || len(all) != 1 {
		t.Fatal(all, err)
	}
	x := all[0]
	aad := secrets.AAD(secrets.OwnerUser, "admin46200", "canary")
	if _, err := old.Open(secrets.Sealed{KeyID: old.ID(), Nonce: x.Nonce, Ciphertext: x.Ciphertext}, aad); !errors.Is(err, secrets.ErrDamaged) {
		t.Errorf("the old key on the rotated secret: %v, want it not to open", err)
	}
	if got, err := next.Open(secrets.Sealed{KeyID: x.KeyID, Nonce: x.Nonce, Ciphertext: x.Ciphertext}, aad); err != nil || string(got) != value {
		t.Errorf("the new key does not open the secret: %v", err)
	}
	j := p.Wait(p.Admin, submit(t, p.Admin, dspool.JobSpec{Command: []string{"sh", "-c", `printf '%s' "$CANARY" | sha256sum | cut -d' ' -f1`},
		Secrets: []dspool.SecretUse{{Secret: "canary"}}}).ID)
	if out := jobLog(t, p, j.ID); j.State != dspool.JobSucceeded || out[0] != sha(value) {
		t.Errorf("job after rotation: %s %q, want the secret's hash", j.State, out)
	}
}

// A team's secret is its members': they use it as TEAM/NAME, others do not
// see it, and a member who leaves loses it.
func TestTeamSecrets(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 46300})
	ctx := context.Background()
	var clients []*api.Client
	for _, name := range []string{"ada463", "bob463"} {
		u, err := p.DB.CreateUser(ctx, name, false)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, p.ClientFor(u))
	}
	ada, bob := clients[0], clients[1]
	if _, err := p.Admin.CreateTeam(ctx, "ml"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Admin.AddTeamMember(ctx, "ml", "ada463", false); err != nil {
		t.Fatal(err)
	}
	value := randomSecret(t)
	s, err := ada.SetSecret(ctx, "wandb", api.SecretSet{Value: []byte(value), Team: "ml"})
	if err != nil || s.Team != "ml" || s.User != "" || s.Ref() != "ml/wandb" {
		t.Fatalf("set a team's secret: %+v %v", s, err)
	}
	if _, err := bob.SetSecret(ctx, "wandb", api.SecretSet{Value: []byte("x"), Team: "ml"}); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("a non-member sets a team's secret: %v, want not found", err)
	}
	if l, err := bob.Secrets(ctx); err != nil || len(l) != 0 {
		t.Errorf("a non-member lists %+v %v, want nothing", l, err)
	}
	if _, err := bob.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, Secrets: []dspool.SecretUse{{Secret: "ml/wandb"}}}, 0); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Errorf("a non-member uses a team's secret: %v, want invalid", err)
	}
	if _, err := p.Admin.AddTeamMember(ctx, "ml", "bob463", false); err != nil {
		t.Fatal(err)
	}
	if l, err := bob.Secrets(ctx); err != nil || len(l) != 1 || l[0].Ref() != "ml/wandb" {
		t.Errorf("a new member lists %+v %v, want ml/wandb", l, err)
	}
	j := p.Wait(bob, submit(t, bob, dspool.JobSpec{Command: []string{"sh", "-c", `printf '%s' "$WANDB" | sha256sum | cut -d' ' -f1`},
		Secrets: []dspool.SecretUse{{Secret: "ml/wandb"}}}).ID)
	if out := jobLog(t, p, j.ID); j.State != dspool.JobSucceeded || out[0] != sha(value) {
		t.Errorf("a member's job: %s %q, want the secret's hash", j.State, out)
	}
	if _, err := p.Admin.RemoveTeamMember(ctx, "ml", "ada463"); err != nil {
		t.Fatal(err)
	}
	if err := ada.DeleteSecret(ctx, "wandb", "ml"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("a former member deletes the team's secret: %v, want not found", err)
	}
	if _, err := ada.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, Secrets: []dspool.SecretUse{{Secret: "ml/wandb"}}}, 0); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Errorf("a former member uses the team's secret: %v, want invalid", err)
	}
	// Only the member who set it, a maintainer or an admin changes it.
	if _, err := bob.SetSecret(ctx, "wandb", api.SecretSet{Value: []byte("mine"), Team: "ml"}); dspool.ErrorCode(err) != dspool.EForbidden || !strings.Contains(err.Error(), "was set by ada463") {
		t.Errorf("a member replaces another's team secret: %v, want forbidden, naming who set it", err)
	}
	if err := bob.DeleteSecret(ctx, "wandb", "ml"); dspool.ErrorCode(err) != dspool.EForbidden {
		t.Errorf("a member deletes another's team secret: %v, want forbidden", err)
	}
	if _, err := bob.SetSecret(ctx, "own", api.SecretSet{Value: []byte("x"), Team: "ml"}); err != nil {
		t.Errorf("a member creates a team secret: %v", err)
	}
	if _, err := bob.SetSecret(ctx, "own", api.SecretSet{Value: []byte("y"), Team: "ml"}); err != nil {
		t.Errorf("a member replaces the team secret they set: %v", err)
	}
	if _, err := p.Admin.AddTeamMember(ctx, "ml", "bob463", true); err != nil {
		t.Fatal(err)
	}
	if err := bob.DeleteSecret(ctx, "wandb", "ml"); err != nil {
		t.Errorf("a maintainer deletes the team's secret: %v", err)
	}
}

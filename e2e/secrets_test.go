package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/secrets"
	_ "modernc.org/sqlite"
)

// record keeps everything the test was told (CLI output, ssh output, ps
// listings), to search it for the secret at the end.
type record struct{ bytes.Buffer }

func (r *record) cli(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	out, errs, code := cliWithInput(t, env, stdin, args...)
	r.WriteString(out + errs)
	return out, errs, code
}

func (r *record) ok(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	out, errs, code := r.cli(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("dspool %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// ps records every process's command line, as `ps` and /proc show it.
func (r *record) ps(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ps", "-eww", "-o", "pid,user,args").CombinedOutput()
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	r.Write(out)
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, _ := os.ReadFile(f)
		r.Write(b)
		r.WriteByte('\n')
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestSecretsCanary gives a secret of random value to a job (as a variable
// and a file), to SSH sessions and to a Jupyter server, then searches for
// it everywhere it must not be: the store and its WAL, every log, the
// share, every answer and output the test got, the pool's events and the
// processes' command lines while the work ran. The work proves it had the
// value by printing its hash.
func TestSecretsCanary(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	up := startUp(t, upConfig{UIDBase: uidBase(41)})
	ada := up.sshUser(t, "e2esec41a")
	bob := up.sshUser(t, "e2esec41b")
	aenv, benv := up.userEnv(ada.token), up.userEnv(bob.token)
	var rec record
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	canary := "canary-" + hex.EncodeToString(b)
	want := sha256hex(canary)

	// The value goes in on standard input, never in an argument.
	if _, errs, code := rec.cli(t, aenv, "", "secret", "set", "canary", "not-the-canary"); code == 0 || !strings.Contains(errs, "standard input") {
		t.Fatalf("a value given as an argument: exit %d, %q; want a refusal pointing at standard input", code, errs)
	}
	rec.ok(t, aenv, canary+"\n", "secret", "set", "canary", "--session-env", "CANARY", "--session-file")
	rec.ok(t, aenv, "", "secret", "list")
	var listed []*dspool.Secret
	if err := jsonInto(rec.ok(t, aenv, "", "secret", "list", "-o", "json"), &listed); err != nil || len(listed) != 1 || listed[0].Name != "canary" || listed[0].SessionEnv != "CANARY" {
		t.Fatalf("secret list: %+v %v", listed, err)
	}
	keyFile := filepath.Join(up.Data, "secrets.key")
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v; want mode 0600", st, err)
	}

	var jobID int64
	var secretsDir string
	t.Run("a job gets it as a variable and a file, and no one else can read them", func(t *testing.T) {
		// The job proves what it got, then waits for the test to look at
		// the node while it runs.
		script := `printf '%s' "$CANARY" | sha256sum | cut -d' ' -f1
sha256sum < "$DSPOOL_SECRETS_DIR/canary" | cut -d' ' -f1
echo "$DSPOOL_SECRETS_DIR $$"
while [ ! -e go ]; do sleep 0.1; done`
		var j dspool.Job
		if err := jsonInto(rec.ok(t, aenv, "", "job", "submit", "-o", "json", "--secret", "canary", "--secret-file", "canary", "--", "sh", "-c", script), &j); err != nil {
			t.Fatal(err)
		}
		jobID = j.ID
		jobDir := filepath.Join(up.Share, "jobs", itoa(j.ID))
		var lines []string
		eventually(t, 30*time.Second, "the job to print what it got", func() bool {
			b, _ := os.ReadFile(filepath.Join(jobDir, "attempt-1.log"))
			lines = strings.Split(strings.TrimSpace(string(b)), "\n")
			return len(lines) == 3
		})
		if lines[0] != want || lines[1] != want {
			t.Fatalf("the job saw %q, want the hash %s twice", lines[:2], want)
		}
		var pid string
		secretsDir, pid, _ = strings.Cut(lines[2], " ")
		if !strings.HasPrefix(secretsDir, "/run/dspool/") || strings.HasPrefix(secretsDir, up.Data) {
			t.Errorf("secrets directory %s: want it under /run/dspool, off the share", secretsDir)
		}
		for path, mode := range map[string]string{secretsDir + "/canary": "400", secretsDir: "700", filepath.Dir(secretsDir): "700"} {
			out, _ := exec.Command("stat", "-c", "%a %u", path).Output()
			if got := strings.TrimSpace(string(out)); got != mode+" "+strconv.Itoa(ada.UID) {
				t.Errorf("%s: %q, want mode %s, uid %d", path, got, mode, ada.UID)
			}
		}
		rec.ps(t)
		// Bob, on the same node, reads neither the file nor the job's
		// environment.
		out, errs, _ := bob.ssh(t, bob.Name, nil, "cat "+secretsDir+"/canary; ls "+secretsDir+"; cat /proc/"+pid+"/environ; echo done")
		rec.WriteString(out + errs)
		if !strings.Contains(out, "done") || strings.Count(errs, "Permission denied") < 3 {
			t.Errorf("bob looking at ada's job: stdout %q, stderr %q; want three refusals", out, errs)
		}
		rec.ok(t, aenv, "", "job", "list", "-o", "json")
		rec.ok(t, aenv, "", "job", "show", itoa(j.ID), "-o", "json")
		if err := os.WriteFile(filepath.Join(jobDir, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		done := waitState(t, aenv, j.ID, dspool.JobSucceeded, 30*time.Second)
		if len(done.Secrets) != 2 || done.Secrets[0].Secret != "canary" || done.Secrets[0].Env != "CANARY" || !done.Secrets[1].File {
			t.Errorf("job show lists secrets %+v, want canary as CANARY and as a file", done.Secrets)
		}
		if shown := rec.ok(t, aenv, "", "job", "show", itoa(j.ID)); !strings.Contains(shown, "  secrets:    canary in $CANARY, canary as a file\n") {
			t.Errorf("job show lacks the job's secrets:\n%s", shown)
		}
		rec.ok(t, aenv, "", "job", "list")
		rec.ok(t, aenv, "", "job", "logs", itoa(j.ID))
		eventually(t, 10*time.Second, "the attempt's runtime directory to go", func() bool {
			_, err := os.Lstat(filepath.Dir(secretsDir))
			return errors.Is(err, fs.ErrNotExist)
		})
	})

	t.Run("SSH sessions get it as a variable and a file", func(t *testing.T) {
		cmd, line, errs := ada.sshLongRunning(t, `echo "$(printf '%s' "$CANARY" | sha256sum | cut -d' ' -f1) $(sha256sum < "$DSPOOL_SECRETS_DIR/canary" | cut -d' ' -f1) $DSPOOL_SECRETS_DIR"; sleep 60`)
		rec.WriteString(line + errs.String())
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != want || f[1] != want {
			t.Fatalf("the session printed %q (stderr %q), want the hash twice and a directory", line, errs)
		}
		dir := f[2]
		out, _ := exec.Command("stat", "-c", "%a %u", dir+"/canary").Output()
		if got := strings.TrimSpace(string(out)); got != "400 "+strconv.Itoa(ada.UID) {
			t.Errorf("session's secret file: %q, want 400 %d", got, ada.UID)
		}
		rec.ps(t)
		// Every connection of the session sees it.
		rec.WriteString(ada.sshOK(t, `test "$(printf '%s' "$CANARY" | sha256sum | cut -d' ' -f1)" = `+want+` && echo same`))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		eventually(t, 15*time.Second, "the session's runtime directory to go", func() bool {
			_, err := os.Lstat(filepath.Dir(dir))
			return errors.Is(err, fs.ErrNotExist)
		})
		rec.ok(t, aenv, "", "session", "list", "--ended", "-o", "json")
	})

	t.Run("a Jupyter server gets it too", func(t *testing.T) {
		adm := up.api(up.adminToken(t))
		ctx := context.Background()
		pool, err := adm.Pool(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		fake, err := filepath.Abs("testdata/fake_jupyter.py")
		if err != nil {
			t.Fatal(err)
		}
		src, _ := os.ReadFile(fake)
		fake = filepath.Join(tempDir(t), "fake_jupyter.py")
		if err := os.WriteFile(fake, src, 0o644); err != nil {
			t.Fatal(err)
		}
		// A stand-in server that notes the hashes of what it was given.
		pool.Pool.Sessions.Jupyter = []string{"/bin/sh", "-c", `printf '%s' "$CANARY" | sha256sum | cut -d' ' -f1 > "$HOME/nb-env"; ` +
			`sha256sum < "$DSPOOL_SECRETS_DIR/canary" | cut -d' ' -f1 > "$HOME/nb-file"; exec /usr/bin/python3 ` + fake + ` "$@"`, "sh"}
		if _, err := adm.ApplyPools(ctx, []*dspool.Pool{pool.Pool}); err != nil {
			t.Fatal(err)
		}
		rec.ok(t, aenv, "", "notebook", "start", "--wait")
		for _, f := range []string{"nb-env", "nb-file"} {
			b, _ := os.ReadFile(filepath.Join(up.Share, "home", ada.Name, f))
			if got := strings.TrimSpace(string(b)); got != want {
				t.Errorf("the notebook server's %s: %q, want %s", f, got, want)
			}
		}
		rec.ok(t, aenv, "", "notebook", "stop")
	})

	t.Run("another user can neither see nor use nor delete it", func(t *testing.T) {
		out := rec.ok(t, benv, "", "secret", "list", "-o", "json")
		if strings.TrimSpace(out) != "[]" {
			t.Errorf("bob's secret list: %s", out)
		}
		if _, errs, code := rec.cli(t, benv, "", "job", "submit", "--secret", "canary", "--", "true"); code == 0 || !strings.Contains(errs, "dspool: --secret canary: you have no secret named canary") {
			t.Errorf("bob submits with ada's secret: exit %d, %q; want a refusal naming the flag", code, errs)
		}
		if _, errs, code := rec.cli(t, benv, "", "secret", "delete", "canary"); code == 0 || !strings.Contains(errs, "not found") {
			t.Errorf("bob deletes ada's secret: exit %d, %q; want not found", code, errs)
		}
		if _, errs, code := rec.cli(t, aenv, "", "job", "submit", "--secret-file", "nope", "--", "true"); code == 0 || !strings.Contains(errs, "dspool: --secret-file nope: you have no secret named nope") {
			t.Errorf("a job asking for an unknown secret: exit %d, %q; want a refusal naming the flag", code, errs)
		}
	})

	t.Run("rotate-key keeps secrets usable and the old key opens nothing", func(t *testing.T) {
		old, err := secrets.ReadKeyFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if _, errs, code := rec.cli(t, aenv, "", "secret", "rotate-key"); code == 0 || !strings.Contains(errs, "admin") {
			t.Errorf("a user rotates the key: exit %d, %q; want a refusal", code, errs)
		}
		rec.ok(t, up.env(), "", "secret", "rotate-key")
		next, err := secrets.ReadKeyFile(keyFile)
		if err != nil || next.ID() == old.ID() {
			t.Fatalf("key file after rotation: %v %v", next, err)
		}
		s := storedSecret(t, up, ada.Name, "canary")
		aad := secrets.AAD(secrets.OwnerUser, ada.Name, "canary")
		if _, err := old.Open(secrets.Sealed{KeyID: old.ID(), Nonce: s.Nonce, Ciphertext: s.Ciphertext}, aad); err == nil {
			t.Error("the old key file opens the rotated secret")
		}
		if s.KeyID != next.ID() {
			t.Errorf("stored under %s, want %s", s.KeyID, next.ID())
		}
		out := rec.ok(t, aenv, "", "job", "submit", "--wait", "-o", "json", "--secret", "canary", "--", "sh", "-c", `printf '%s' "$CANARY" | sha256sum | cut -d' ' -f1`)
		var j dspool.Job
		if err := jsonInto(out, &j); err != nil || j.State != dspool.JobSucceeded {
			t.Fatalf("job after rotation: %v %s", err, out)
		}
		if logs := rec.ok(t, aenv, "", "job", "logs", itoa(j.ID)); strings.TrimSpace(logs) != want {
			t.Errorf("job after rotation printed %q, want %s", logs, want)
		}
	})

	t.Run("every delivery is audited", func(t *testing.T) {
		var entries []dspool.AuditEntry
		if err := jsonInto(rec.ok(t, up.env(), "", "audit", "--action", "secret", "--since", "0", "-o", "json"), &entries); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, strings.Join([]string{e.Actor, e.Action, e.Target, e.Detail}, " "))
		}
		all := strings.Join(got, "\n")
		for _, w := range []string{
			ada.Name + " secret.write secret canary created",
			ada.Name + " secret.read secret canary job " + itoa(jobID) + " attempt 1",
			ada.Name + " secret.read secret canary session s-",
			"admin secret.rotate_key key k-",
		} {
			if !strings.Contains(all, w) {
				t.Errorf("no audit entry %q in:\n%s", w, all)
			}
		}
		rec.ok(t, up.env(), "", "audit", "--action", "secret", "--since", "0")
	})

	rec.ok(t, up.env(), "", "pool", "events", "default", "-o", "json")
	rec.ok(t, up.env(), "", "pool", "events", "default")

	// While it runs, then once it has stopped (the WAL folded into the
	// store): the value is nowhere, nor its base64.
	needles := []string{canary, base64.StdEncoding.EncodeToString([]byte(canary)), base64.StdEncoding.EncodeToString([]byte(canary + "\n"))}
	var mustSearch []string
	search := func(when string) {
		var files []string
		_ = filepath.WalkDir(filepath.Dir(up.Data), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		searched, hashed := map[string]bool{}, 0
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Errorf("%s: read %s: %v", when, f, err)
				continue
			}
			searched[filepath.Base(f)] = true
			for _, n := range needles {
				if bytes.Contains(b, []byte(n)) {
					t.Errorf("%s: the secret is in %s", when, f)
				}
			}
			if bytes.Contains(b, []byte(want)) {
				hashed++
			}
		}
		// The search did reach the store, the logs and the share: the
		// jobs' logs there hold the hash.
		for _, f := range mustSearch {
			if !searched[f] {
				t.Errorf("%s: %s was not searched", when, f)
			}
		}
		if hashed == 0 {
			t.Errorf("%s: no file holds the hash the jobs printed: the share was not searched", when)
		}
		for _, n := range needles {
			if strings.Contains(rec.String(), n) {
				t.Errorf("%s: the secret is in what the test was told (CLI output, ssh, ps)", when)
			}
		}
		// The node's runtime directory holds nothing once the work is over.
		if left, _ := os.ReadDir(filepath.Dir(filepath.Dir(secretsDir))); len(left) > 0 {
			t.Errorf("%s: %d entries left in the node's runtime directory", when, len(left))
		}
	}
	mustSearch = []string{"dspool.db", "dspool.db-wal", "up.err", "up.out", "default-1.log", "attempt-1.log", "secrets.key"}
	search("while running")
	up.Stop()
	mustSearch = []string{"dspool.db", "up.err", "default-1.log", "attempt-1.log"}
	search("after stopping")
}

func jsonInto(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// openStore opens the store of up read-only, as someone with a copy of it
// would.
func openStore(t *testing.T, up *upProc) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(up.Data, "dspool.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type storedRow struct {
	KeyID             string
	Nonce, Ciphertext []byte
}

func storedSecret(t *testing.T, up *upProc, user, name string) storedRow {
	t.Helper()
	var s storedRow
	err := openStore(t, up).QueryRow(`SELECT key_id, nonce, ciphertext FROM secrets WHERE owner_kind = 'user' AND owner = ? AND name = ?`, user, name).
		Scan(&s.KeyID, &s.Nonce, &s.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

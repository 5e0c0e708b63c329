package e2e_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

// keyedUser is an sshUser logging in with one more key of theirs.
type keyedUser struct {
	*sshUser
	fingerprint string
}

// secondKey registers another key for s and returns s logging in with it.
func (s *sshUser) secondKey(t *testing.T) *keyedUser {
	t.Helper()
	key := filepath.Join(tempDir(t), s.Name+"_second")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", s.Name+"@second", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	var k dspool.SSHKey
	cliJSON(t, s.up.userEnv(s.token), &k, "key", "add", key+".pub")
	other := *s
	other.key = key
	return &keyedUser{sshUser: &other, fingerprint: k.Fingerprint}
}

// waitExit waits up to limit for a long-running ssh client to exit, and
// fails the test if it does not.
func waitExit(t *testing.T, cmd *exec.Cmd, limit time.Duration, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s: the ssh client was still connected %s later", what, limit)
	}
}

// TestAccessEndToEnd, with the real binary and OpenSSH: a token's scopes
// hold, removing a key ends the connection it opened, disabling a user ends
// their SSH session and refuses their token and key, a revoked token is
// refused, and all of it is in the audit log.
func TestAccessEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("needs OpenSSH's client (apt-get install openssh-client)")
	}
	up := startUp(t, upConfig{UIDBase: uidBase(47)})
	ada := up.sshUser(t, "e2eacc47")
	env := up.userEnv(ada.token)

	ro := strings.TrimSpace(cliOK(t, env, "token", "create", "--name", "ro", "--scope", "read", "--expires", "1h"))
	roEnv := up.userEnv(ro)
	cliOK(t, roEnv, "job", "list")
	if _, errs, code := cli(t, roEnv, "job", "submit", "--", "true"); code != 1 || !strings.Contains(errs, "lacks the jobs scope") {
		t.Errorf("job submit with a read token: exit %d, %q", code, errs)
	}

	// A second key's connection ends when that key goes; the first's stays.
	second := ada.secondKey(t)
	cmd2, line, errb2 := second.sshLongRunning(t, "echo started; exec sleep 60")
	if line != "started" {
		t.Fatalf("second key's command: %q, stderr %q", line, errb2)
	}
	cmd1, line, errb1 := ada.sshLongRunning(t, "echo started; exec sleep 60")
	if line != "started" {
		t.Fatalf("first key's command: %q, stderr %q", line, errb1)
	}
	cliOK(t, env, "key", "remove", second.fingerprint)
	waitExit(t, cmd2, 2*time.Second, "key remove")
	if !strings.Contains(errb2.String(), "this connection was closed: the key it used, "+second.fingerprint+", was removed by e2eacc47") {
		t.Errorf("the removed key's connection was told %q", errb2.String())
	}

	// Disabling ada ends her session at once and refuses her token and key.
	cliOK(t, up.env(), "user", "disable", "e2eacc47")
	waitExit(t, cmd1, 2*time.Second, "user disable")
	if !strings.Contains(errb1.String(), "user e2eacc47 was disabled by") {
		t.Errorf("the disabled user's connection was told %q", errb1.String())
	}
	if _, errs, code := cli(t, env, "job", "list"); code != 1 || !strings.Contains(errs, "user e2eacc47 is disabled") {
		t.Errorf("a disabled user's token: exit %d, %q", code, errs)
	}
	if !strings.Contains(errb1.String(), "Files on the share are intact") || strings.Contains(errb1.String(), "log in again") {
		t.Errorf("the disabled user was invited to log in again: %q", errb1.String())
	}
	if _, errs, code := ada.ssh(t, ada.Name, nil, "true"); code != 255 || !strings.Contains(errs, "your account e2eacc47 is disabled: ask an admin") {
		t.Errorf("a disabled user's ssh login: exit %d, %q; want 255 (refused), saying why", code, errs)
	}
	cliOK(t, up.env(), "user", "enable", "e2eacc47")
	if out := ada.sshOK(t, "echo back"); out != "back\n" {
		t.Errorf("ssh after enable: %q", out)
	}

	var toks []*dspool.Token
	cliJSON(t, env, &toks, "token", "list")
	var roID int64
	for _, tk := range toks {
		if tk.Name == "ro" {
			roID = tk.ID
		}
	}
	cliOK(t, up.env(), "token", "revoke", itoa(roID))
	if _, errs, code := cli(t, roEnv, "job", "list"); code != 1 || !strings.Contains(errs, "token "+itoa(roID)+" (e2eacc47's) was revoked on") || strings.Contains(errs, "dspool up") {
		t.Errorf("a revoked token: exit %d, %q; want how to get a new one, and no dspool up", code, errs)
	}

	var es []*dspool.AuditEntry
	out := cliOK(t, up.env(), "audit", "--user", "e2eacc47", "-o", "json")
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.Action+" "+e.Outcome] = true
	}
	for _, want := range []string{"user.create success", "token.create success", "key.add success", "login.ssh success",
		"key.remove success", "user.disable success", "login.ssh failure", "user.enable success", "token.revoke success"} {
		if !seen[want] {
			t.Errorf("the audit log of e2eacc47 lacks %s: %s", want, out)
		}
	}
}

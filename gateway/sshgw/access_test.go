package sshgw_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/gateway/sshgw"
	"github.com/dspool/dspool/store"
	"golang.org/x/crypto/ssh"
)

// ended waits up to limit for a command started with sleeping to end, and
// returns its stderr.
func ended(t *testing.T, s *ssh.Session, errb *strings.Builder, limit time.Duration) string {
	t.Helper()
	werr := make(chan error, 1)
	go func() { werr <- s.Wait() }()
	select {
	case err := <-werr:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 255 {
			t.Fatalf("ended command: %v, stderr %q; want exit 255", err, errb.String())
		}
		return errb.String()
	case <-time.After(limit):
		t.Fatalf("the command outlived the end of its credential by %s", limit)
	}
	return ""
}

// logins waits for n SSH logins in the audit log (the gateway records a
// refusal once the client has gone) and returns them; for n < 0, those
// there are.
func logins(t *testing.T, f *fixture, n int) []*dspool.AuditEntry {
	t.Helper()
	var es []*dspool.AuditEntry
	f.p.Eventually(5*time.Second, func() bool {
		var err error
		es, err = f.p.DB.Audit(context.Background(), store.AuditFilter{Action: dspool.AuditLoginSSH})
		return err == nil && len(es) >= n
	}, "%d ssh logins in the audit log", n)
	if n >= 0 && len(es) != n {
		t.Fatalf("ssh logins in the audit log: %d, want %d", len(es), n)
	}
	return es
}

// TestRemovingAKeyEndsItsConnections: removing a key ends, within 2 s and
// with a message, the connections that key opened, and only those; the key
// is refused after, and the refusal is in the audit log.
func TestRemovingAKeyEndsItsConnections(t *testing.T) {
	bothGateways(t, 46900, func(t *testing.T, start func(sshgw.Config) *fixture) { removingAKey(t, start(sshgw.Config{})) })
}

func removingAKey(t *testing.T, f *fixture) {
	ctx := context.Background()
	_, key1 := f.user(t, "gwada")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key2, _ := ssh.NewSignerFromKey(priv)
	k2, err := f.p.Admin.AddKey(ctx, "gwada", string(ssh.MarshalAuthorizedKey(key2.PublicKey())))
	if err != nil {
		t.Fatal(err)
	}
	c1, err := f.dial("gwada", key1)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := f.dial("gwada", key2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s1, _ := sleeping(t, c1)
	defer s1.Close()
	s2, errb2 := sleeping(t, c2)

	if _, err := f.p.Admin.RemoveKey(ctx, k2.Fingerprint); err != nil {
		t.Fatal(err)
	}
	// key2's connection ends; key1's goes on, in the same session.
	if msg := ended(t, s2, errb2, 2*time.Second); !strings.Contains(msg, "this connection was closed: the key it used, "+k2.Fingerprint+", was removed by ") ||
		strings.Contains(msg, "your session") {
		t.Errorf("the message: %q; want that this connection, not the session, was closed, and why", msg)
	}
	if out, _, err := run(t, c1, "echo still"); err != nil || out != "still\n" {
		t.Fatalf("key1's connection after key2 went: %q, %v", out, err)
	}
	f.p.Eventually(2*time.Second, func() bool {
		ss, err := f.p.Admin.Sessions(ctx, true, false)
		return err == nil && len(ss) == 1 && ss[0].Connections == 1
	}, "ada's session to keep key1's connection alone")
	if c, err := f.dial("gwada", key2); err == nil {
		c.Close()
		t.Fatal("a removed key logged in")
	}

	es := logins(t, f, 3)
	if e := es[2]; e.Outcome != dspool.AuditFailure || e.Actor != dspool.AuditAnonymous || e.Target != "user gwada" ||
		!strings.Contains(e.Detail, "key "+k2.Fingerprint+" refused") || e.Remote == "" {
		t.Errorf("the refused login: %+v", e)
	}
	if e := es[0]; e.Outcome != dspool.AuditSuccess || e.Actor != "gwada" || !strings.HasPrefix(e.Detail, "key SHA256:") {
		t.Errorf("a login: %+v", e)
	}
	if es, _ := f.p.DB.Audit(ctx, store.AuditFilter{Action: dspool.AuditKeyRemove}); len(es) != 1 || es[0].Target != "key "+k2.Fingerprint {
		t.Errorf("the key's removal in the audit log: %+v", es)
	}
}

// TestDisablingAUserEndsTheirSSH: disabling a user ends their SSH
// sessions within 2 s, with the reason, and refuses their logins after.
func TestDisablingAUserEndsTheirSSH(t *testing.T) {
	bothGateways(t, 46950, func(t *testing.T, start func(sshgw.Config) *fixture) { disablingAUser(t, start(sshgw.Config{})) })
}

func disablingAUser(t *testing.T, f *fixture) {
	ctx := context.Background()
	_, key := f.user(t, "gwada")
	c, err := f.dial("gwada", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, errb := sleeping(t, c)
	admin, _ := f.p.Admin.Whoami(ctx)
	if _, err := f.p.Admin.DisableUser(ctx, "gwada"); err != nil {
		t.Fatal(err)
	}
	msg := ended(t, s, errb, 2*time.Second)
	if !strings.Contains(msg, "user gwada was disabled by "+admin.Name) || strings.Contains(msg, "log in again for a new session") {
		t.Errorf("the message: %q; want the reason, and no invitation to log in again", msg)
	}
	// The key still proves who its holder is, who is told why nothing opens.
	c1, err := f.dial("gwada", key)
	if err != nil {
		t.Fatalf("a disabled user's key: %v; want it to authenticate and then say why", err)
	}
	out, errs, err := run(t, c1, "echo in")
	var ee *ssh.ExitError
	if out != "" || !errors.As(err, &ee) || ee.ExitStatus() != 255 || !strings.Contains(errs, "your account gwada is disabled: ask an admin") {
		t.Errorf("a disabled user's command: %q %q %v; want exit 255 saying the account is disabled", out, errs, err)
	}
	c1.Close()
	// A stranger's key learns nothing of the account.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	stranger, _ := ssh.NewSignerFromKey(priv)
	if c, err := f.dial("gwada", stranger); err == nil {
		c.Close()
		t.Fatal("a stranger's key logged in as a disabled user")
	}
	ss, err := f.p.Admin.Sessions(ctx, true, true)
	if err != nil || len(ss) != 1 || ss[0].State != dspool.SessionEnded || ss[0].EndReason != "user gwada was disabled by "+admin.Name {
		t.Errorf("sessions: %+v, %v", ss, err)
	}
	es := logins(t, f, 3)
	if es[1].Outcome != dspool.AuditFailure || !strings.Contains(es[1].Detail, "user gwada is disabled") {
		t.Errorf("ssh logins in the audit log: %+v; want the refusal saying why", es)
	}
	if es[2].Outcome != dspool.AuditFailure || es[2].Actor != dspool.AuditAnonymous || strings.Contains(es[2].Detail, "disabled") {
		t.Errorf("the stranger's login in the audit log: %+v; want a refusal that does not say the user is disabled", es[2])
	}
	// Enabled again, the same key logs in.
	if _, err := f.p.Admin.EnableUser(ctx, "gwada"); err != nil {
		t.Fatal(err)
	}
	c2, err := f.dial("gwada", key)
	if err != nil {
		t.Fatalf("login after enable: %v", err)
	}
	c2.Close()
}

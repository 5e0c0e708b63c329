package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/password"
	"github.com/dspool/dspool/server"
	"github.com/dspool/dspool/store"
)

// clock is a test's time: it moves only when the test advances it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// clockedServer is a control plane on a test's clock, serving HTTP, with
// the user ada whose password is "right one".
func clockedServer(t *testing.T) (*server.Server, *store.DB, *clock, string) {
	t.Helper()
	ctx := context.Background()
	c := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "dspool.db"), store.Options{UIDBase: 40000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.CreateUser(ctx, "ada", false); err != nil {
		t.Fatal(err)
	}
	hash, err := password.Hash("right one")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetPassword(ctx, "ada", hash); err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: db, Share: t.TempDir(), Now: c.Now})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return srv, db, c, hs.URL
}

// formLogin posts the login form: the status and the Retry-After header.
func formLogin(t *testing.T, base, name, pw string) (int, string) {
	t.Helper()
	form := url.Values{"username": {name}, "password": {pw}}
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func TestWebLoginBacksOffRepeatedFailures(t *testing.T) {
	_, _, c, base := clockedServer(t)
	// 5 free guesses, and the 6th closes the door for 1 s.
	for i := range 6 {
		if got, _ := formLogin(t, base, "ada", "wrong"); got != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, got)
		}
	}
	if got, retry := formLogin(t, base, "ada", "right one"); got != http.StatusTooManyRequests || retry != "1" {
		t.Fatalf("the right password at a closed door: %d Retry-After %q, want 429 with 1", got, retry)
	}
	c.Advance(time.Second)
	if got, _ := formLogin(t, base, "ada", "wrong"); got != http.StatusUnauthorized {
		t.Fatalf("a guess after the wait: %d, want 401", got)
	}
	if got, retry := formLogin(t, base, "ada", "right one"); got != http.StatusTooManyRequests || retry != "2" {
		t.Fatalf("the next wait: %d Retry-After %q, want 429 with 2", got, retry)
	}
	c.Advance(2 * time.Second)
	if got, _ := formLogin(t, base, "ada", "right one"); got != http.StatusSeeOther {
		t.Fatalf("the right password after the wait: %d, want 303", got)
	}
	// The right password forgot ada's failures.
	for i := range 5 {
		if got, _ := formLogin(t, base, "ada", "wrong"); got != http.StatusUnauthorized {
			t.Fatalf("guess %d after a login: %d, want 401", i+1, got)
		}
	}
}

func TestPasswordChecksThrottledPerUserAndAddress(t *testing.T) {
	srv, _, _, _ := clockedServer(t)
	ctx := context.Background()
	// One user, guessed at from many addresses.
	for i := range 6 {
		_, err := srv.AuthenticatePassword(ctx, dspool.Login{User: "ada"}, "wrong", fmt.Sprintf("192.0.2.%d:22", i+1))
		if dspool.ErrorCode(err) != dspool.EUnauthorized {
			t.Fatalf("guess %d: %v, want unauthorized", i+1, err)
		}
	}
	_, err := srv.AuthenticatePassword(ctx, dspool.Login{User: "ada"}, "right one", "192.0.2.100:22")
	var te *server.ThrottledError
	if !errors.As(err, &te) || dspool.ErrorCode(err) != dspool.EUnavailable || !strings.Contains(dspool.Message(err), "for this user") || te.Seconds() != 1 {
		t.Fatalf("ada from a fresh address: %v, want throttled for this user", err)
	}
	// Many users, guessed at from one address: 20 free.
	for i := range 21 {
		_, err := srv.AuthenticatePassword(ctx, dspool.Login{User: fmt.Sprintf("u%d", i)}, "wrong", "198.51.100.1:22")
		if dspool.ErrorCode(err) != dspool.EUnauthorized {
			t.Fatalf("guess %d: %v, want unauthorized", i+1, err)
		}
	}
	_, err = srv.AuthenticatePassword(ctx, dspool.Login{User: "grace"}, "wrong", "198.51.100.1:40000")
	if !errors.As(err, &te) || !strings.Contains(dspool.Message(err), "from your address") {
		t.Fatalf("a 22nd guess from one address: %v, want throttled for the address", err)
	}
}

func TestRefusedLoginsAggregatedInAuditLog(t *testing.T) {
	srv, db, c, base := clockedServer(t)
	ctx := context.Background()
	for range 4 {
		formLogin(t, base, "ghost", "wrong")
		c.Advance(time.Second)
	}
	es := loginAudit(t, db)
	if len(es) != 1 || !strings.Contains(es[0].Remote, "127.0.0.1") {
		t.Fatalf("after 4 refusals in a minute: %d entries %+v, want the first alone", len(es), es)
	}
	// The window ends: the next refusal (of anyone) writes its summary.
	c.Advance(time.Minute)
	_, _ = srv.AuthenticatePassword(ctx, dspool.Login{User: "ada"}, "wrong", "192.0.2.9:22")
	srv.Audit(ctx, dspool.AuditEntry{Action: dspool.AuditLoginSSH, Target: "user ada", Remote: "192.0.2.9:22", Outcome: dspool.AuditFailure, Detail: "password refused"})
	es = loginAudit(t, db)
	var summary *dspool.AuditEntry
	for _, e := range es {
		if e.Target == "user ghost" && strings.Contains(e.Detail, "3 more refused since 2025-03-01T09:00:00Z") {
			summary = e
		}
	}
	if len(es) != 3 || summary == nil || summary.Remote != "127.0.0.1" {
		t.Fatalf("after the window: %d entries, want ghost's first, its summary (3 more, from 127.0.0.1) and ada's first: %s", len(es), describe(es))
	}
}

func loginAudit(t *testing.T, db *store.DB) []*dspool.AuditEntry {
	t.Helper()
	es, err := db.Audit(context.Background(), store.AuditFilter{Action: "login"})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func describe(es []*dspool.AuditEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n  %s %s %s %s: %s", e.Action, e.Target, e.Remote, e.Outcome, e.Detail)
	}
	return b.String()
}

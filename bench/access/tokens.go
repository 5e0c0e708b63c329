package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

// Cell is one throughput cell: conc clients, each sending GET listPath
// after GET listPath with one token on its own keep-alive connection, for
// the cell's duration.
type Cell struct {
	Token     string `json:"token"`
	Conc      int    `json:"concurrency"`
	Want      int    `json:"want_status"` // 200, or 401 for the revoked token
	host.Load        // requests are the answers with Want
	// RevokedAgoS is, for the revoked token, how long before the cell it
	// was revoked (at least revokedSettle).
	RevokedAgoS float64 `json:"revoked_ago_s,omitempty"`
}

// Revocation is how soon a token in use is refused once `dspool token
// revoke` has returned, over several tokens.
type Revocation struct {
	Runs []*RevokeRun `json:"runs"`
	// MaxLagMs is the longest time from the command's return to the first
	// 401 (0 when that came before the return).
	MaxLagMs float64 `json:"max_lag_ms"`
	// LetIn counts the answers 200 to requests sent after the command
	// returned, in all runs.
	LetIn int `json:"let_in_after_return"`
}

// RevokeRun is one token's revocation. The token is used every 5 ms from
// 100 ms before `dspool token revoke` starts (so that the server has it
// cached as valid) until it is refused.
type RevokeRun struct {
	TokenID int64 `json:"token_id"`
	// CommandMs is the revoke command's run time: process start, login
	// file, the request, exit.
	CommandMs float64 `json:"command_ms"`
	// FirstRefusalMs is when the first 401 arrived, from the command's
	// return: negative when before it.
	FirstRefusalMs float64 `json:"first_refusal_ms"`
	LagMs          float64 `json:"lag_ms"` // max(0, FirstRefusalMs)
	LetIn          int     `json:"let_in_after_return"`
	Requests       int     `json:"requests"`
}

// revokedSettle is how long after its revocation the revoked token's
// cells start: past the server's 5 s during which it reads a token just
// dropped from its cache from the store at each request.
const revokedSettle = 6 * time.Second

// token is one credential the cells use.
type token struct {
	name, secret string
	want         int
	revokedAt    time.Time
}

// benchTokens makes a read-only token and a revoked one with the CLI,
// measures revocations, then every cell: each concurrency, each token one
// after another, so that whatever else the machine does falls alike on
// them.
func benchTokens(ctx context.Context, up *host.Up, n Sizes) (*Revocation, []*Cell, error) {
	read, err := createToken(ctx, up, "bench-read")
	if err != nil {
		return nil, nil, err
	}
	revoked, err := createToken(ctx, up, "bench-revoked")
	if err != nil {
		return nil, nil, err
	}
	// Used once before it is revoked, so that the server had it cached.
	hc := host.LoadClient(1, host.TLSOf(up.Client))
	defer hc.CloseIdleConnections()
	if code, err := get(ctx, hc, up.Client.Server, revoked.Secret); err != nil || code != http.StatusOK {
		return nil, nil, fmt.Errorf("token %d before its revocation: %d %v", revoked.ID, code, err)
	}
	if _, err := up.Output(ctx, nil, "token", "revoke", strconv.FormatInt(revoked.ID, 10)); err != nil {
		return nil, nil, err
	}
	tokens := []*token{
		{name: "login (all scopes)", secret: up.Client.Token, want: http.StatusOK},
		{name: "read, expires 1h", secret: read.Secret, want: http.StatusOK},
		{name: "revoked", secret: revoked.Secret, want: http.StatusUnauthorized, revokedAt: time.Now()},
	}

	host.Logf("revocation: %d tokens, each used every 5 ms while `dspool token revoke` runs", n.Revocations)
	rev := &Revocation{}
	for range n.Revocations {
		run, err := revokeInUse(ctx, up)
		if err != nil {
			return nil, nil, err
		}
		host.Logf("revocation of token %d: command %.1f ms; first 401 %+.2f ms from its return; %d let in after it",
			run.TokenID, run.CommandMs, run.FirstRefusalMs, run.LetIn)
		rev.Runs = append(rev.Runs, run)
		rev.MaxLagMs = max(rev.MaxLagMs, run.LagMs)
		rev.LetIn += run.LetIn
	}

	// A token revoked in the last 5 s is read from the store at each
	// request; after, its refusal is cached as a valid token is. The
	// cells measure the lasting state.
	if wait := time.Until(tokens[2].revokedAt.Add(revokedSettle)); wait > 0 {
		host.Logf("waiting %.1fs: the revoked token's cells start %s after its revocation", wait.Seconds(), revokedSettle)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	var cells []*Cell
	for _, c := range n.Concurrency {
		for _, t := range tokens {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			cell, err := hammer(ctx, up.Client, t, c, n.Duration)
			if err != nil {
				return nil, nil, fmt.Errorf("%s, c=%d: %w", t.name, c, err)
			}
			host.Logf("GET %s, %s, c=%d: %.0f req/s, p50 %.2f p99 %.2f ms, %d errors", listPath, t.name, c, cell.ReqPerS, cell.P50Ms, cell.P99Ms, cell.Errors)
			cells = append(cells, cell)
		}
	}
	return rev, cells, nil
}

// createToken runs `dspool token create --scope read --expires 1h`.
func createToken(ctx context.Context, up *host.Up, name string) (*api.NewToken, error) {
	out, err := up.Output(ctx, nil, "token", "create", "--name", name, "--scope", "read", "--expires", "1h", "-o", "json")
	if err != nil {
		return nil, err
	}
	var t api.NewToken
	if err := json.Unmarshal(out, &t); err != nil || t.Secret == "" {
		return nil, fmt.Errorf("dspool token create -o json: %q: %v", out, err)
	}
	return &t, nil
}

// revokeInUse makes a token, uses it every 5 ms, revokes it with the CLI
// meanwhile, and polls on until a request sent after the command returned
// has been answered and a 401 has come. The first request after the
// return goes out at once, not at the next tick.
func revokeInUse(ctx context.Context, up *host.Up) (*RevokeRun, error) {
	t, err := createToken(ctx, up, "bench-revoke")
	if err != nil {
		return nil, err
	}
	hc := host.LoadClient(1, host.TLSOf(up.Client))
	defer hc.CloseIdleConnections()
	type sample struct {
		sent, recv time.Time
		code       int
	}
	var samples []sample
	type revoked struct {
		start, end time.Time
		err        error
	}
	done := make(chan revoked, 1)
	var ret *revoked
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	t0 := time.Now()
	for started := false; ; {
		if !started && time.Since(t0) >= 100*time.Millisecond {
			started = true
			go func() {
				r := revoked{start: time.Now()}
				_, r.err = up.Output(ctx, nil, "token", "revoke", strconv.FormatInt(t.ID, 10))
				r.end = time.Now()
				done <- r
			}()
		}
		s := sample{sent: time.Now()}
		code, err := get(ctx, hc, up.Client.Server, t.Secret)
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", t.ID, err)
		}
		s.recv, s.code = time.Now(), code
		samples = append(samples, s)
		if code != http.StatusOK && code != http.StatusUnauthorized {
			return nil, fmt.Errorf("token %d: answered %d", t.ID, code)
		}
		if !started && code != http.StatusOK {
			return nil, fmt.Errorf("token %d: answered %d before its revocation", t.ID, code)
		}
		if ret != nil && s.sent.After(ret.end) && slices.ContainsFunc(samples, func(s sample) bool { return s.code == http.StatusUnauthorized }) {
			break
		}
		if ret != nil && time.Since(ret.end) > 10*time.Second {
			return nil, fmt.Errorf("token %d still let in 10 s after `dspool token revoke` returned", t.ID)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r := <-done:
			if r.err != nil {
				return nil, r.err
			}
			ret = &r
		case <-tick.C:
		}
	}
	run := &RevokeRun{TokenID: t.ID, CommandMs: ms(ret.end.Sub(ret.start)), Requests: len(samples)}
	first := samples[slices.IndexFunc(samples, func(s sample) bool { return s.code == http.StatusUnauthorized })]
	run.FirstRefusalMs = ms(first.recv.Sub(ret.end))
	run.LagMs = max(0, run.FirstRefusalMs)
	for _, s := range samples {
		if s.sent.After(ret.end) && s.code == http.StatusOK {
			run.LetIn++
		}
	}
	return run, nil
}

// get sends GET listPath with the token and reads the whole answer (so
// that the connection is reused); it returns the status.
func get(ctx context.Context, hc *http.Client, server, secret string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", server+listPath, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// hammer measures one cell. Each client first sends one untimed request
// (which opens its connection); then all send for d. An answer other than
// t.want is an error, counted and not timed.
func hammer(ctx context.Context, cl *api.Client, t *token, conc int, d time.Duration) (*Cell, error) {
	server := cl.Server
	c := &Cell{Token: t.name, Conc: conc, Want: t.want}
	if !t.revokedAt.IsZero() {
		c.RevokedAgoS = time.Since(t.revokedAt).Seconds()
	}
	hc := host.LoadClient(conc, host.TLSOf(cl))
	defer hc.CloseIdleConnections()
	check := func() error {
		code, err := get(ctx, hc, server, t.secret)
		if err == nil && code != t.want {
			err = fmt.Errorf("answered %d, not %d", code, t.want)
		}
		return err
	}
	l, err := host.Hammer(ctx, conc, d, check)
	c.Load = l
	if err != nil {
		return nil, fmt.Errorf("answers %d: %w", t.want, err)
	}
	return c, nil
}

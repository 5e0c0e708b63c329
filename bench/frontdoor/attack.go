package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
	"golang.org/x/crypto/ssh"
)

// fresh is the address the measured clients come from: no attacker's.
const fresh = "127.0.0.30"

// holders keep connections open from loopback addresses, as an attacker
// holding a server's slots does.
type holders struct {
	held   atomic.Int64 // connections the server kept for heldAfter
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// heldAfter is how long a connection must stay open to count as held (a
// refused one is closed at once).
const heldAfter = 500 * time.Millisecond

// hold opens n connections from each of locals to addr and keeps them
// open until stop: a connection the server closes is dialled again, after
// a second when it was refused.
func hold(locals []string, addr string, n int) *holders {
	ctx, cancel := context.WithCancel(context.Background())
	h := &holders{cancel: cancel}
	for _, local := range locals {
		for range n {
			h.wg.Add(1)
			go func() { defer h.wg.Done(); h.keep(ctx, local, addr) }()
		}
	}
	return h
}

func (h *holders) keep(ctx context.Context, local, addr string) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			stop := context.AfterFunc(ctx, func() { c.Close() })
			held := h.wait(c)
			stop()
			c.Close()
			if held {
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// wait reads c until it is closed, counting it as held while it is once
// it has lasted heldAfter; it reports whether it was.
func (h *holders) wait(c net.Conn) bool {
	held := false
	buf := make([]byte, 512)
	_ = c.SetReadDeadline(time.Now().Add(heldAfter))
	for {
		_, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !held {
			held = true
			h.held.Add(1)
			_ = c.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil {
			if held {
				h.held.Add(-1)
			}
			return held
		}
	}
}

// settle waits until want connections are held, or 15 s, and returns how
// many are.
func (h *holders) settle(ctx context.Context, want int) int {
	_ = host.Poll(ctx, 15*time.Second, 100*time.Millisecond, func() (bool, error) { return h.held.Load() >= int64(want), nil })
	return int(h.held.Load())
}

func (h *holders) stop() {
	h.cancel()
	h.wg.Wait()
}

// sshLogins times n logins (connect, key exchange, authentication) from
// the fresh address, one after another; it counts those that failed.
func sshLogins(ctx context.Context, addr string, key ssh.Signer, n int) ([]float64, int) {
	var samples []float64
	failed := 0
	cfg := &ssh.ClientConfig{User: benchAdmin, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fresh)}, Timeout: 10 * time.Second}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		t0 := time.Now()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			var sc ssh.Conn
			sc, _, _, err = ssh.NewClientConn(c, addr, cfg)
			if err == nil {
				samples = append(samples, ms(time.Since(t0)))
				sc.Close()
			}
			c.Close()
		}
		if err != nil {
			failed++
			host.Logf("ssh login from %s: %v", fresh, err)
		}
	}
	return samples, failed
}

// healthz times n GET /healthz from the fresh address, each on a new
// connection; it counts those that failed.
func healthz(ctx context.Context, base string, tc *tls.Config, n int) ([]float64, int) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fresh)}, Timeout: 10 * time.Second}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext, TLSClientConfig: tc}}
	var samples []float64
	failed := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		t0 := time.Now()
		resp, err := cl.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s", resp.Status)
			}
		}
		if err != nil {
			failed++
			continue
		}
		samples = append(samples, ms(time.Since(t0)))
	}
	return samples, failed
}

// benchSSH: logins from a fresh address, idle, then while 20 addresses
// hold every unauthenticated slot.
func benchSSH(ctx context.Context, r *Result, addr string, key ssh.Signer) error {
	n := r.Sizes
	sshLogins(ctx, addr, key, 2) // warm up
	idle, failed := sshLogins(ctx, addr, key, n.Logins)
	if failed > 0 || len(idle) == 0 {
		return fmt.Errorf("%d of %d logins failed on the idle gateway", failed, n.Logins)
	}
	r.SSHIdle = newDist(idle)
	var locals []string
	for i := range n.Holders {
		locals = append(locals, fmt.Sprintf("127.0.0.%d", i+2))
	}
	h := hold(locals, addr, n.PerHold)
	defer h.stop()
	// 256: the gateway's unauthenticated slots (sshgw's default).
	r.SSHHeld = h.settle(ctx, 256)
	host.Logf("%d addresses hold %d unauthenticated SSH connections", n.Holders, r.SSHHeld)
	attacked, failed := sshLogins(ctx, addr, key, n.Logins)
	r.SSHFailed = failed
	if len(attacked) > 0 {
		r.SSHAttacked = newDist(attacked)
	}
	return nil
}

// benchHealthz: GET /healthz idle, then while one address holds n.Conns
// connections to the API.
func benchHealthz(ctx context.Context, r *Result, up *host.Up, shareDir string) error {
	base := up.Client.Server
	tc := host.TLSOf(up.Client)
	n := r.Sizes
	healthz(ctx, base, tc, 10) // warm up
	idle, failed := healthz(ctx, base, tc, n.Healthz)
	if failed > 0 || len(idle) == 0 {
		return fmt.Errorf("%d of %d requests failed on the idle API", failed, n.Healthz)
	}
	r.HTTPIdle = newDist(idle)
	addr := host.Addr(base)
	h := hold([]string{"127.0.0.2"}, addr, n.Conns)
	defer h.stop()
	// 256: the API's connections per address (server.MaxConnsPerSource).
	r.HTTPHeld = h.settle(ctx, min(256, n.Conns))
	host.Logf("one address holds %d connections to the API (of %d it opens)", r.HTTPHeld, n.Conns)
	// The same user, from another address, abandons requests for a log
	// that is a FIFO.
	ab, err := abandonLogs(ctx, up, shareDir, "127.0.0.3", abandoners)
	if err != nil {
		return err
	}
	defer func() { r.LogsAbandoned = ab.stop() }()
	// Under way before measuring: n.Healthz requests' worth abandoned.
	_ = host.Poll(ctx, 30*time.Second, 10*time.Millisecond, func() (bool, error) { return ab.sent.Load() >= int64(10*n.Healthz), nil })
	loaded, failed := healthz(ctx, base, tc, n.Healthz)
	r.HTTPFailed = failed
	if len(loaded) > 0 {
		r.HTTPLoaded = newDist(loaded)
	}
	return nil
}

// Dist is a set of samples in ms with nearest-rank percentiles.
type Dist struct {
	Samples []float64 `json:"samples_ms"`
	P50     float64   `json:"p50_ms"`
	P99     float64   `json:"p99_ms"`
	Max     float64   `json:"max_ms"`
}

func newDist(samples []float64) *Dist {
	s := slices.Sorted(slices.Values(samples))
	return &Dist{Samples: samples, P50: host.Pct(s, 50), P99: host.Pct(s, 99), Max: s[len(s)-1]}
}

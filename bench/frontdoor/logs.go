package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/share"
	"golang.org/x/sys/unix"
)

// abandoner asks, from one address and as fast as it can, to follow the log
// of a job whose log is a FIFO, and abandons each request after a moment
// without reading the answer: what held the API for good before dspool
// refused such logs.
type abandoner struct {
	sent   atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// abandonLogs queues a job (the bench's pool has no node, so it never
// starts), puts a FIFO of its user where its log goes, and starts n
// clients from local abandoning requests for that log.
func abandonLogs(ctx context.Context, up *host.Up, shareDir, local string, n int) (*abandoner, error) {
	j, err := up.Client.SubmitJob(ctx, &dspool.JobSpec{Name: "fifo-log", Command: []string{"true"}}, 0)
	if err != nil {
		return nil, fmt.Errorf("submit the job whose log is a FIFO: %w", err)
	}
	me, err := up.Client.Whoami(ctx)
	if err != nil {
		return nil, err
	}
	log := filepath.Join(shareDir, filepath.FromSlash(share.Log(j.ID, max(j.Attempt, 1))))
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mkfifo(log, 0o666); err != nil {
		return nil, fmt.Errorf("plant the FIFO: %w", err)
	}
	if os.Geteuid() == 0 {
		_ = os.Chown(log, me.UID, me.GID)
	}
	req := fmt.Sprintf("GET /api/v1/jobs/%d/logs?follow=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", j.ID, up.Client.Token)
	addr := host.Addr(up.Client.Server)
	tc := host.TLSOf(up.Client)
	ctx, cancel := context.WithCancel(ctx)
	a := &abandoner{cancel: cancel}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	for range n {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					continue
				}
				if tc != nil {
					tcfg := tc.Clone()
					tcfg.ServerName, _, _ = net.SplitHostPort(addr)
					c = tls.Client(c, tcfg)
				}
				if _, err := c.Write([]byte(req)); err == nil {
					a.sent.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
				c.Close()
			}
		}()
	}
	return a, nil
}

func (a *abandoner) stop() int64 {
	a.cancel()
	a.wg.Wait()
	return a.sent.Load()
}

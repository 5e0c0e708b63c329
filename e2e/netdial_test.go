package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialFrom dials from inside the network namespace at nsPath: the socket
// is made on a thread that has entered it, and stays in it once the thread
// goes back, so the rest of the test talks as a process on that host.
func dialFrom(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			// The thread is left locked (and so ended) if it cannot go
			// back to this process's namespace.
			self, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				done <- result{err: err}
				return
			}
			defer self.Close()
			ns, err := os.Open(nsPath)
			if err != nil {
				done <- result{err: err}
				return
			}
			defer ns.Close()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				done <- result{err: fmt.Errorf("enter %s: %w", nsPath, err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			done <- result{c, err}
		}()
		r := <-done
		return r.c, r.err
	}
}

// httpOn is an HTTP client on host i that trusts the CA in caFile alone.
func (h *hosts) httpOn(i int, caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{Transport: &http.Transport{DialContext: dialFrom("/run/netns/" + h.name(i)),
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: false}}, nil
}

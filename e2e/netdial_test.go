package e2e_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
)

// httpOn is an HTTP client on host i that trusts the CA in caFile alone:
// its sockets are made on a thread that has entered host i's namespace,
// and stay in it, so the rest of the test talks as a process on that host.
func (h *hosts) httpOn(i int, caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{Transport: &http.Transport{DialContext: h.Dialer(i, &net.Dialer{}),
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: false}}, nil
}

package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
)

// TLSConfig is a client's TLS configuration: the system's roots, or, when
// caFile is given, the certificates in it alone (the pool's own CA that a
// login pinned, a private CA, or a server's self-signed certificate): a
// pinned CA is trusted instead of the public ones, not beside them, and a
// command does not pay for loading the system's roots.
func TLSConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// NewHTTPClient is an HTTP client with the default client's settings that
// also trusts the certificates in caFile.
func NewHTTPClient(caFile string) (*http.Client, error) {
	cfg, err := TLSConfig(caFile)
	if err != nil {
		return nil, err
	}
	return HTTPClientWith(cfg), nil
}

// HTTPClientWith is an HTTP client with the default client's settings and
// cfg for TLS.
func HTTPClientWith(cfg *tls.Config) *http.Client {
	t := defaultHTTP.Transport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	return &http.Client{Transport: t}
}

// LoopbackHost says whether host (a name or an address) is this machine's
// loopback: the one place plain HTTP may go.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

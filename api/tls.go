package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
)

// TLSConfig is a client's TLS configuration: the system's roots and, when
// caFile is given, the certificates in it (a private CA, or a server's
// self-signed certificate).
func TLSConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
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

package tlsca_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool/tlsca"
)

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	a, err := tlsca.LoadOrCreate(dir, []string{"pool.example", "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"pool.example", "10.0.0.7", "localhost", "127.0.0.1", "::1"} {
		if err := a.Cert.Leaf.VerifyHostname(n); err != nil {
			t.Errorf("the server certificate does not name %s: %v", n, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v; want mode 0600", st, err)
	}
	// The same names: the same CA and certificate.
	b, err := tlsca.LoadOrCreate(dir, []string{"pool.example"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Pin() != a.Pin() || !b.Cert.Leaf.Equal(a.Cert.Leaf) {
		t.Fatal("loading again changed the CA or the certificate")
	}
	// A new name: a new certificate from the same CA.
	c, err := tlsca.LoadOrCreate(dir, []string{"other.example"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pin() != a.Pin() || c.Cert.Leaf.Equal(a.Cert.Leaf) || c.Cert.Leaf.VerifyHostname("other.example") != nil {
		t.Fatal("a new name did not give a new certificate from the same CA")
	}
}

func TestParsePin(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name, in string
		ok       bool
	}{
		{"canonical", good, true},
		{"upper case", strings.ToUpper(good), true},
		{"no prefix", strings.Repeat("ab", 32), false},
		{"short", "sha256:abcd", false},
		{"not hex", "sha256:" + strings.Repeat("zz", 32), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tlsca.ParsePin(tt.in)
			if (err == nil) != tt.ok || tt.ok && got != good {
				t.Fatalf("ParsePin(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

// serve runs a TLS server with a's certificate and returns its address.
func serve(t *testing.T, a *tlsca.Authority) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{a.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestPinnedConfig(t *testing.T) {
	a, err := tlsca.LoadOrCreate(filepath.Join(t.TempDir(), "a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsca.LoadOrCreate(filepath.Join(t.TempDir(), "b"), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, a)
	dial := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	var found *x509.Certificate
	if err := dial(tlsca.PinnedConfig("127.0.0.1", a.Pin(), nil, func(c *x509.Certificate) { found = c })); err != nil {
		t.Fatalf("the right pin: %v", err)
	}
	if found == nil || tlsca.Pin(found) != a.Pin() {
		t.Fatal("the verified CA was not handed over")
	}
	if err := dial(tlsca.PinnedConfig("127.0.0.1", other.Pin(), nil, nil)); !errors.Is(err, tlsca.ErrPin) {
		t.Fatalf("another CA's pin: %v; want ErrPin", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(found)
	if err := dial(tlsca.PinnedConfig("127.0.0.1", "", roots, nil)); err != nil {
		t.Fatalf("the CA kept from the first contact: %v", err)
	}
	if err := dial(tlsca.PinnedConfig("pool.example", a.Pin(), nil, nil)); err == nil || !errors.Is(err, tlsca.ErrName) || !strings.Contains(err.Error(), "add pool.example to the control plane's advertise (--advertise") {
		t.Fatalf("a name the certificate lacks: %v; want a hint at --advertise", err)
	}
}

// Package tlsca is the control plane's own certificate authority: a private
// CA made at first start, the server certificate it issues for the names and
// addresses the control plane is reached by, and the pin (the SHA-256 of the
// CA's public key) that join tokens and logins carry, so that an agent or a
// CLI trusts the server on first contact without a CA file, as kubeadm's
// discovery hash does. It never reaches the network and never logs.
package tlsca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dspool/dspool/internal/atomicfile"
)

// Files in the CA's directory, all the control plane's own (0600 for keys).
const (
	CAFile     = "ca.crt"
	caKeyFile  = "ca.key"
	CertFile   = "server.crt" // the server's certificate, then the CA's
	serverKey  = "server.key"
	caLife     = 10 * 365 * 24 * time.Hour
	serverLife = 365 * 24 * time.Hour
	// renewBefore: a server certificate this close to its end is issued anew
	// at start.
	renewBefore = 30 * 24 * time.Hour
)

// Authority is a loaded CA and the server certificate it issued.
type Authority struct {
	Dir  string
	CA   *x509.Certificate
	Cert tls.Certificate // the server's, with the CA's after it
}

// Pin is the CA's pin, "sha256:" and the hex of the SHA-256 of its
// SubjectPublicKeyInfo.
func (a *Authority) Pin() string { return Pin(a.CA) }

// Pin returns the pin of cert's public key.
func Pin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParsePin checks that s is a pin ("sha256:" and 64 hex digits) and
// returns it in its canonical form.
func ParsePin(s string) (string, error) {
	h, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a CA pin: want sha256: and 64 hex digits, as `dspool pool join-token` and the control plane's start print", s)
	}
	return "sha256:" + h, nil
}

// LoadOrCreate loads the CA in dir, making it on first use, and a server
// certificate for names (host names and IP addresses), issued anew when it
// lacks one of them or nears its end. Loopback names are always in it.
func LoadOrCreate(dir string, names []string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA directory: %w", err)
	}
	ca, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	names = withLoopback(names)
	a := &Authority{Dir: dir, CA: ca}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, serverKey))
	if err == nil && covers(cert.Leaf, ca, names) {
		a.Cert = cert
		return a, nil
	}
	if a.Cert, err = issue(dir, ca, caKey, names); err != nil {
		return nil, err
	}
	return a, nil
}

func withLoopback(names []string) []string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// covers says whether leaf was issued by ca for every name and is far
// from its end.
func covers(leaf, ca *x509.Certificate, names []string) bool {
	if leaf == nil || leaf.CheckSignatureFrom(ca) != nil || time.Until(leaf.NotAfter) < renewBefore {
		return false
	}
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func loadOrCreateCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, caKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		signer, ok := pair.PrivateKey.(crypto.Signer)
		if !ok || pair.Leaf == nil || !pair.Leaf.IsCA {
			return nil, nil, fmt.Errorf("%s is not a CA this control plane can sign with", certPath)
		}
		return pair.Leaf, signer, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("load the CA in %s: %w (move the directory away to make a new CA; agents and logins pinned to the old one must then join again)", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "dspool CA " + host, Organization: []string{"dspool"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caLife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeFile(certPath, pemCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func issue(dir string, ca *x509.Certificate, caKey crypto.Signer, names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[len(names)-1], Organization: []string{"dspool"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(serverLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	chain := append(pemCert(der), pemCert(ca.Raw)...)
	if err := writeKey(filepath.Join(dir, serverKey), key); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFile(filepath.Join(dir, CertFile), chain, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, serverKey))
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := atomicfile.Write(path, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// PinnedConfig returns a client TLS configuration for host that trusts a
// server whose chain holds a CA with pin, or, when roots is not nil, one
// that chains to roots (a CA pinned at first contact). It verifies the
// host name as usual; found receives the pinned CA once a handshake
// verified it, to be kept for later connections.
func PinnedConfig(host, pin string, roots *x509.CertPool, found func(*x509.Certificate)) *tls.Config {
	return &tls.Config{
		ServerName: host,
		MinVersion: tls.VersionTLS12,
		// The chain is verified below, against the pinned CA instead of the
		// system's roots.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verify(cs, host, pin, roots, found)
		},
	}
}

// ErrPin is wrapped by the refusal of a server that does not present the
// pinned CA.
var ErrPin = errors.New("the server is not the one the pin names")

// ErrName is wrapped by the error for a server, verified by its pin, whose
// certificate does not name the address that was dialled.
var ErrName = errors.New("the server's certificate does not name the address dialled")

func verify(cs tls.ConnectionState, host, pin string, roots *x509.CertPool, found func(*x509.Certificate)) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	var ca *x509.Certificate
	if roots == nil {
		for _, c := range cs.PeerCertificates {
			if c.IsCA && Pin(c) == pin {
				ca = c
			}
		}
		if ca == nil {
			return fmt.Errorf("%w: no certificate it presented has the CA pin %s", ErrPin, pin)
		}
		roots = x509.NewCertPool()
		roots.AddCert(ca)
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	if err != nil {
		var he x509.HostnameError
		if errors.As(err, &he) {
			return fmt.Errorf("%w: it is for %s, not %s: reach it by one of those names, or add %s to the control plane's advertise (--advertise, or advertise: in dspool server's config) and restart it", ErrName, strings.Join(names(leaf), ", "), host, host)
		}
		return fmt.Errorf("%w: %v", ErrPin, err)
	}
	if found != nil && ca == nil && len(chains) > 0 {
		ca = chains[0][len(chains[0])-1]
	}
	if found != nil && ca != nil {
		found(ca)
	}
	return nil
}

func names(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// PEM is cert in PEM.
func PEM(cert *x509.Certificate) []byte { return pemCert(cert.Raw) }

// ParsePEM returns the first certificate in b.
func ParsePEM(b []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no certificate in PEM")
		}
		if blk.Type == "CERTIFICATE" {
			return x509.ParseCertificate(blk.Bytes)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return nil, errors.New("no certificate in PEM")
		}
	}
}

// Ephemeral makes a self-signed certificate with a new key, for a server
// that is known by its key's pin alone (KeyPinnedConfig): an SSH gateway's
// listener for agents. It lives for a year; the key is never written.
func Ephemeral() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "dspool gateway"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(366 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, Pin(cert), nil
}

// KeyPinnedConfig is a client TLS configuration that trusts exactly the
// server whose certificate's public key has pin, whatever names it bears.
func KeyPinnedConfig(pin string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below, by the key's pin
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			if got := Pin(cs.PeerCertificates[0]); got != pin {
				return fmt.Errorf("%w: its key's pin is %s, not %s", ErrPin, got, pin)
			}
			return nil
		},
	}
}

package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/tlsca"
)

// linkTLS is how the control plane serves its API and agent link.
type linkTLS struct {
	cert *tls.Certificate // nil: plain HTTP (--insecure-http, loopback only)
	// caFile is the certificate file a CLI login trusts; pin is the CA's
	// pin that join tokens carry ("" when the certificate came without
	// its CA).
	caFile, pin string
}

// serverTLS loads --tls-cert/--tls-key when given; else the control
// plane's own CA in DATA/tls, made at first start, and a server
// certificate for the names it is reached by (--advertise, this machine's
// name and addresses). Plain HTTP only when asked for, on loopback.
func (o *planeOptions) serverTLS() (linkTLS, error) {
	if o.TLSCert != "" || o.TLSKey != "" {
		if o.TLSCert == "" || o.TLSKey == "" {
			return linkTLS{}, dspool.Invalid("tls_cert", "give both a certificate and its key (--tls-cert and --tls-key), or neither")
		}
		c, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return linkTLS{}, dspool.Invalid("tls_cert", "cannot load %s and %s: %v", o.TLSCert, o.TLSKey, err)
		}
		l := linkTLS{cert: &c}
		if abs, err := filepath.Abs(o.TLSCert); err == nil {
			l.caFile = abs
		}
		if top, err := lastCert(c); err == nil && top.IsCA {
			l.pin = tlsca.Pin(top)
		}
		return l, nil
	}
	if o.InsecureHTTP {
		host, _, err := net.SplitHostPort(o.Listen)
		if err != nil || !api.LoopbackHost(host) {
			return linkTLS{}, dspool.Invalid("insecure_http", "plain HTTP is for development on this machine only: listen on a loopback address (127.0.0.1:PORT), or drop --insecure-http")
		}
		return linkTLS{}, nil
	}
	a, err := tlsca.LoadOrCreate(filepath.Join(o.Data, "tls"), o.advertised())
	if err != nil {
		return linkTLS{}, fmt.Errorf("the control plane's CA: %w", err)
	}
	return linkTLS{cert: &a.Cert, caFile: filepath.Join(a.Dir, tlsca.CAFile), pin: a.Pin()}, nil
}

// advertised are the names the server certificate is for: --advertise, or
// this machine's name and, when the API listens on every address, every
// address of this machine (a certificate names what agents dial).
func (o *planeOptions) advertised() []string {
	if len(o.Advertise) > 0 {
		return o.Advertise
	}
	var names []string
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	host, _, _ := net.SplitHostPort(o.Listen)
	ip := net.ParseIP(host)
	switch {
	case host != "" && ip == nil:
		names = append(names, host)
	case ip != nil && !ip.IsUnspecified():
		names = append(names, ip.String())
	default:
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				names = append(names, n.IP.String())
			}
		}
	}
	return names
}

func lastCert(c tls.Certificate) (*x509.Certificate, error) {
	return x509.ParseCertificate(c.Certificate[len(c.Certificate)-1])
}

// Package forwarded says who sent a request that may have come through
// reverse proxies (a load balancer): the client's address, and the scheme
// and host the client asked for. It reads X-Forwarded-For,
// X-Forwarded-Proto and X-Forwarded-Host when, and only when, the
// connection comes from a proxy the operator trusts; from anyone else the
// headers are ignored, since anyone can write them.
//
// It does no I/O and keeps no state: the control plane asks it once per
// decision (an audit entry, a password throttle, a cookie's Secure flag, a
// URL it builds), so that they all agree.
package forwarded

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/dspool/dspool"
)

// Proxies are the addresses whose X-Forwarded-* headers are believed. The
// zero value trusts no one.
type Proxies struct {
	nets []netip.Prefix
}

// New trusts the proxies in nets.
func New(nets []netip.Prefix) Proxies {
	out := make([]netip.Prefix, len(nets))
	for i, n := range nets {
		out[i] = n.Masked()
	}
	return Proxies{nets: out}
}

// Parse reads trusted proxies as written in a config file or on the
// command line: networks ("10.0.0.0/8", "fd00::/8") or addresses
// ("192.168.1.5", "::1"). An entry that is neither is refused naming
// field[i].
func Parse(field string, entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, e := range entries {
		e = strings.TrimSpace(e)
		name := fmt.Sprintf("%s[%d]", field, i)
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, dspool.Invalid(name, "%q is not a network: give e.g. 10.0.0.0/8 or fd00::/8", e)
			}
			if p.Bits() == 0 {
				return nil, dspool.Invalid(name, "%q trusts every address, so anyone could write the headers of a proxy: give the proxies' own addresses", e)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil || a.Zone() != "" {
			return nil, dspool.Invalid(name, "%q is not an address or a network: give e.g. 192.168.1.5 or 10.0.0.0/8", e)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Trusts says whether ip is one of the proxies.
func (p Proxies) Trusts(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, n := range p.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Client is what a request says of the client that sent it.
type Client struct {
	// Addr is the client's address: the connection's "HOST:PORT", or,
	// through a trusted proxy, the address the proxies name (no port).
	Addr string
	// Scheme is "https" or "http": how the client reached the front door.
	Scheme string
	// Host is the host (and port) the client asked for.
	Host string
	// Proxy is the address of the trusted proxy the request came through
	// ("" when it came directly).
	Proxy string
}

// Secure says whether the client speaks HTTPS to the front door (its
// cookies may then be Secure).
func (c Client) Secure() bool { return c.Scheme == "https" }

// Client returns who sent r. From a trusted proxy, the client's address is
// the right-most address of X-Forwarded-For that is no trusted proxy (the
// left part is what the client and untrusted hops wrote, and may be
// anything); X-Forwarded-Proto (http or https) and X-Forwarded-Host (a
// host[:port]) replace the connection's own when they are valid. From
// anyone else, the headers are ignored.
func (p Proxies) Client(r *http.Request) Client {
	c := Client{Addr: r.RemoteAddr, Scheme: "http", Host: r.Host}
	if r.TLS != nil {
		c.Scheme = "https"
	}
	if len(p.nets) == 0 {
		return c
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !p.Trusts(peer.Addr()) {
		return c
	}
	c.Proxy = r.RemoteAddr
	if ip, ok := p.clientIP(r.Header.Values("X-Forwarded-For")); ok {
		c.Addr = ip.String()
	}
	if s, ok := first(r.Header.Get("X-Forwarded-Proto")); ok {
		if s = strings.ToLower(s); s == "http" || s == "https" {
			c.Scheme = s
		}
	}
	if h, ok := first(r.Header.Get("X-Forwarded-Host")); ok && ValidHost(h) {
		c.Host = h
	}
	return c
}

// clientIP walks X-Forwarded-For from the right: each address was written
// by the hop to its right, so it is believed while that hop is a trusted
// proxy. The first address that is no proxy is the client's; when all are
// proxies, the left-most is. An entry that is no address (an empty one
// included) ends the walk with the last address believed (false when there
// is none): a trusted proxy never writes one.
func (p Proxies) clientIP(lines []string) (netip.Addr, bool) {
	var last netip.Addr
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for j := len(rest); j >= 0; {
			k := strings.LastIndexByte(rest[:j], ',')
			ip, ok := parseEntry(rest[k+1 : j])
			switch {
			case !ok:
				return last, last.IsValid()
			case !p.Trusts(ip):
				return ip, true
			}
			last, j = ip, k
		}
	}
	return last, last.IsValid()
}

// parseEntry reads one address of X-Forwarded-For: "1.2.3.4", "::1", and
// the forms some proxies write with a port ("1.2.3.4:80", "[::1]:80") or
// brackets ("[::1]").
func parseEntry(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if inner, ok := strings.CutPrefix(s, "["); ok {
		if inner, ok = strings.CutSuffix(inner, "]"); ok {
			if ip, err := netip.ParseAddr(inner); err == nil && ip.Is6() {
				return ip.WithZone(""), true
			}
		}
	}
	return netip.Addr{}, false
}

// first is the first of a header's comma-separated values. Proxies set
// X-Forwarded-Proto and -Host rather than append to them; when one
// appended, the first value is the outermost proxy's, which saw the client.
func first(v string) (string, bool) {
	v, _, _ = strings.Cut(v, ",")
	v = strings.TrimSpace(v)
	return v, v != ""
}

// ValidHost says whether h is a host as the Host header carries it: a DNS
// name, an IPv4 address or a bracketed IPv6 address, and an optional port.
func ValidHost(h string) bool {
	if len(h) > 261 {
		return false
	}
	host, port := h, ""
	if rest, ok := strings.CutPrefix(h, "["); ok {
		addr, after, ok := strings.Cut(rest, "]")
		ip, err := netip.ParseAddr(addr)
		if !ok || err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
		if after != "" {
			if port, ok = strings.CutPrefix(after, ":"); !ok {
				return false
			}
			return validPort(port)
		}
		return true
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if !validPort(port) {
			return false
		}
	}
	return validName(host)
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n > 0 && n <= 65535
}

// validName accepts DNS names (letters, digits, '-', '_' and dots between
// labels) and IPv4 addresses, which are written in the same characters.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

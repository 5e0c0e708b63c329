package forwarded_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/forwarded"
)

func proxies(t testing.TB, entries ...string) forwarded.Proxies {
	t.Helper()
	nets, err := forwarded.Parse("trusted_proxies", entries)
	if err != nil {
		t.Fatal(err)
	}
	return forwarded.New(nets)
}

func request(peer string, tlsOn bool, hdr map[string][]string) *http.Request {
	r := httptest.NewRequest("GET", "http://pool.internal:8080/", nil)
	r.RemoteAddr = peer
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	}
	for k, vs := range hdr {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r
}

func TestClient(t *testing.T) {
	p := proxies(t, "10.0.0.0/8", "192.168.1.5", "fd00::/8")
	direct := forwarded.Client{Addr: "203.0.113.7:4242", Scheme: "http", Host: "pool.internal:8080"}
	tests := []struct {
		name string
		peer string
		tls  bool
		hdr  map[string][]string
		want forwarded.Client
	}{
		{name: "direct without headers", peer: "203.0.113.7:4242", want: direct},
		{name: "direct over TLS", peer: "203.0.113.7:4242", tls: true,
			want: forwarded.Client{Addr: "203.0.113.7:4242", Scheme: "https", Host: "pool.internal:8080"}},
		{name: "untrusted peer's headers are ignored", peer: "203.0.113.7:4242",
			hdr:  map[string][]string{"X-Forwarded-For": {"198.51.100.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil.example"}},
			want: direct},
		{name: "untrusted peer over TLS claiming http", peer: "203.0.113.7:4242", tls: true,
			hdr:  map[string][]string{"X-Forwarded-Proto": {"http"}},
			want: forwarded.Client{Addr: "203.0.113.7:4242", Scheme: "https", Host: "pool.internal:8080"}},
		{name: "trusted proxy", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"198.51.100.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"pool.example.com"}},
			want: forwarded.Client{Addr: "198.51.100.1", Scheme: "https", Host: "pool.example.com", Proxy: "10.1.2.3:5555"}},
		{name: "trusted single address", peer: "192.168.1.5:80",
			hdr:  map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want: forwarded.Client{Addr: "198.51.100.1", Scheme: "http", Host: "pool.internal:8080", Proxy: "192.168.1.5:80"}},
		{name: "neighbour of a trusted address is not trusted", peer: "192.168.1.6:80",
			hdr:  map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want: forwarded.Client{Addr: "192.168.1.6:80", Scheme: "http", Host: "pool.internal:8080"}},
		{name: "trusted proxy without X-Forwarded-For", peer: "10.1.2.3:5555",
			want: forwarded.Client{Addr: "10.1.2.3:5555", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "spoofed left-most entries", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"127.0.0.1, 10.9.9.9, 198.51.100.1"}},
			want: forwarded.Client{Addr: "198.51.100.1", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "chain of trusted proxies", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1, 10.2.0.1, 192.168.1.5"}},
			want: forwarded.Client{Addr: "198.51.100.1", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "several header lines read as one list", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"6.6.6.6", "198.51.100.1", "10.2.0.1"}},
			want: forwarded.Client{Addr: "198.51.100.1", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "every hop a proxy: the left-most", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"10.3.3.3, 10.2.0.1"}},
			want: forwarded.Client{Addr: "10.3.3.3", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "garbage ends the walk at the last proxy", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"198.51.100.1, unknown, 10.2.0.1"}},
			want: forwarded.Client{Addr: "10.2.0.1", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "garbage right away leaves the peer", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"198.51.100.1,"}},
			want: forwarded.Client{Addr: "10.1.2.3:5555", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "entries with ports and brackets", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"[2001:db8::1]:443, 10.0.0.9:80"}},
			want: forwarded.Client{Addr: "2001:db8::1", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "IPv4-mapped IPv6 proxy and client", peer: "[::ffff:10.1.2.3]:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"::ffff:198.51.100.1"}},
			want: forwarded.Client{Addr: "198.51.100.1", Scheme: "http", Host: "pool.internal:8080", Proxy: "[::ffff:10.1.2.3]:5555"}},
		{name: "IPv6 proxy", peer: "[fd00::2]:5555",
			hdr:  map[string][]string{"X-Forwarded-For": {"2001:db8::7"}, "X-Forwarded-Proto": {"HTTPS"}},
			want: forwarded.Client{Addr: "2001:db8::7", Scheme: "https", Host: "pool.internal:8080", Proxy: "[fd00::2]:5555"}},
		{name: "proto other than http(s) is ignored", peer: "10.1.2.3:5555", tls: true,
			hdr:  map[string][]string{"X-Forwarded-Proto": {"javascript"}},
			want: forwarded.Client{Addr: "10.1.2.3:5555", Scheme: "https", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "proxy over TLS saying the client used http", peer: "10.1.2.3:5555", tls: true,
			hdr:  map[string][]string{"X-Forwarded-Proto": {"http"}},
			want: forwarded.Client{Addr: "10.1.2.3:5555", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "first of several values", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-Proto": {"https, http"}, "X-Forwarded-Host": {"pool.example.com:8443, lb.internal"}},
			want: forwarded.Client{Addr: "10.1.2.3:5555", Scheme: "https", Host: "pool.example.com:8443", Proxy: "10.1.2.3:5555"}},
		{name: "invalid host is ignored", peer: "10.1.2.3:5555",
			hdr:  map[string][]string{"X-Forwarded-Host": {"evil.example/path?x"}},
			want: forwarded.Client{Addr: "10.1.2.3:5555", Scheme: "http", Host: "pool.internal:8080", Proxy: "10.1.2.3:5555"}},
		{name: "peer that is no address", peer: "@",
			hdr:  map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			want: forwarded.Client{Addr: "@", Scheme: "http", Host: "pool.internal:8080"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Client(request(tc.peer, tc.tls, tc.hdr)); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNoProxiesTrustsNoOne(t *testing.T) {
	var p forwarded.Proxies
	r := request("127.0.0.1:1", false, map[string][]string{"X-Forwarded-For": {"198.51.100.1"}, "X-Forwarded-Proto": {"https"}})
	if got := p.Client(r); got.Addr != "127.0.0.1:1" || got.Secure() || got.Proxy != "" {
		t.Errorf("got %+v, want the connection's own", got)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		want    []netip.Prefix
		field   string
	}{
		{name: "networks and addresses", entries: []string{"10.0.0.0/8", " 192.168.1.5 ", "fd00::/8", "::1", "10.1.2.3/8"},
			want: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.5/32"),
				netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.0.0.0/8")}},
		{name: "none", entries: nil},
		{name: "a name", entries: []string{"10.0.0.1", "lb.example.com"}, field: "trusted_proxies[1]"},
		{name: "bad network", entries: []string{"10.0.0.0/33"}, field: "trusted_proxies[0]"},
		{name: "everyone", entries: []string{"0.0.0.0/0"}, field: "trusted_proxies[0]"},
		{name: "empty", entries: []string{""}, field: "trusted_proxies[0]"},
		{name: "zone", entries: []string{"fe80::1%eth0"}, field: "trusted_proxies[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := forwarded.Parse("trusted_proxies", tc.entries)
			if tc.field != "" {
				var e *dspool.Error
				if !errors.As(err, &e) || e.Field != tc.field {
					t.Fatalf("got %v, want an error naming %s", err, tc.field)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("entry %d: got %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestValidHost(t *testing.T) {
	for _, h := range []string{"pool.example.com", "pool.example.com:8443", "10.0.0.1", "10.0.0.1:80", "[::1]", "[2001:db8::1]:443", "localhost", "my_host.lan."} {
		if !forwarded.ValidHost(h) {
			t.Errorf("ValidHost(%q) = false, want true", h)
		}
	}
	for _, h := range []string{"", ":80", "a:0", "a:65536", "a:-1", "a b", "a/b", "a@b", "::1", "[::1", "[::1]x", "[fe80::1%25eth0]",
		"-a.b", "a..b", "evil.example\r\nSet-Cookie: x", strings.Repeat("a", 64) + ".com", "[10.0.0.1]"} {
		if forwarded.ValidHost(h) {
			t.Errorf("ValidHost(%q) = true, want false", h)
		}
	}
}

// FuzzClient: any headers from a trusted proxy give a client address that
// is an IP address (or the connection's), a scheme of http or https, and a
// valid host; from an untrusted peer, the connection's own always.
func FuzzClient(f *testing.F) {
	f.Add("10.1.2.3:5555", "6.6.6.6, 198.51.100.1, 10.2.0.1", "https", "pool.example.com:8443")
	f.Add("203.0.113.7:4242", "198.51.100.1", "https", "evil.example")
	f.Add("[fd00::2]:1", "[2001:db8::1]:443,,", "HTTP, https", "[::1]:80")
	f.Add("10.0.0.1:1", "unknown", "", "a b")
	p := proxies(f, "10.0.0.0/8", "fd00::/8")
	f.Fuzz(func(t *testing.T, peer, xff, proto, host string) {
		r := request(peer, false, map[string][]string{"X-Forwarded-For": {xff}, "X-Forwarded-Proto": {proto}, "X-Forwarded-Host": {host}})
		r.Host = "pool.internal"
		c := p.Client(r)
		if c.Scheme != "http" && c.Scheme != "https" {
			t.Fatalf("scheme %q", c.Scheme)
		}
		if c.Host != r.Host && !forwarded.ValidHost(c.Host) {
			t.Fatalf("host %q is not valid", c.Host)
		}
		if c.Proxy == "" {
			if c != (forwarded.Client{Addr: peer, Scheme: "http", Host: r.Host}) {
				t.Fatalf("untrusted peer %q: got %+v, want its own", peer, c)
			}
			return
		}
		if want := reference(p, peer, xff); c.Addr != want {
			t.Fatalf("X-Forwarded-For %q from %q: client %q, want %q", xff, peer, c.Addr, want)
		}
	})
}

// reference is the client's address by the book: split X-Forwarded-For
// into its entries and take the right-most that is no trusted proxy.
func reference(p forwarded.Proxies, peer, xff string) string {
	entries := strings.Split(xff, ",")
	got := peer
	for i := len(entries) - 1; i >= 0; i-- {
		e := strings.TrimSpace(entries[i])
		ip, err := netip.ParseAddr(e)
		if inner, ok := strings.CutPrefix(e, "["); ok && err != nil && strings.HasSuffix(inner, "]") {
			if ip, err = netip.ParseAddr(strings.TrimSuffix(inner, "]")); err == nil && !ip.Is6() {
				err = errors.New("IPv4 in brackets")
			}
		}
		if err != nil {
			ap, perr := netip.ParseAddrPort(strings.TrimSpace(entries[i]))
			if perr != nil {
				return got
			}
			ip = ap.Addr()
		}
		ip = ip.Unmap().WithZone("")
		got = ip.String()
		if !p.Trusts(ip) {
			return got
		}
	}
	return got
}

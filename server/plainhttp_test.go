package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool/server"
)

// TestRedirectPlainHTTP: a plain HTTP request on the HTTPS port is sent to
// the same address over HTTPS; HTTPS is served as before; a request whose
// Host cannot be an address gets a 400 that says what to do.
func TestRedirectPlainHTTP(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "over TLS") }))
	srv.Listener = server.RedirectPlainHTTP(srv.Listener)
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Get("http://" + addr + "/jobs/12?attempt=2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "https://" + addr + "/jobs/12?attempt=2"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("plain HTTP: %d, Location %q (%s); want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), body, want)
	}

	resp, err = srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "over TLS" {
		t.Fatalf("HTTPS through the same listener: %d %q", resp.StatusCode, body)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: evil.example/x\r\n\r\n")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(got.Body)
	if got.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "https://") {
		t.Fatalf("a Host that is no address: %d %q; want 400 saying to use https://", got.StatusCode, b)
	}
}

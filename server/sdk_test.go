package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/python"
)

// TestSDKServed: the Python SDK's archive is served to anyone, listed on
// /sdk/ with its hash for pip, and a wrong name says the right one.
func TestSDKServed(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	want, err := python.Archive()
	if err != nil {
		t.Fatal(err)
	}
	code, body := get("/sdk/" + python.ArchiveName())
	if code != http.StatusOK || body != string(want) {
		t.Fatalf("GET /sdk/%s: %d, %d bytes; want 200 and the %d bytes of the archive", python.ArchiveName(), code, len(body), len(want))
	}
	sum := sha256.Sum256(want)
	code, body = get("/sdk/")
	if link := python.ArchiveName() + "#sha256=" + hex.EncodeToString(sum[:]); code != http.StatusOK || !strings.Contains(body, `href="`+link+`"`) {
		t.Fatalf("GET /sdk/: %d %s; want a link to %s", code, body, link)
	}
	code, body = get("/sdk/dspool-0.0.0.tar.gz")
	if code != http.StatusNotFound || !strings.Contains(body, "/sdk/"+python.ArchiveName()) {
		t.Fatalf("GET /sdk/dspool-0.0.0.tar.gz: %d %s; want 404 naming /sdk/%s", code, body, python.ArchiveName())
	}
}

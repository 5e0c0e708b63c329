package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/python"
)

// The Python SDK, for `pip install` on any node and laptop with no other
// network: GET /sdk/ is a page of links (pip's --find-links), GET
// /sdk/dspool-VERSION.tar.gz the source archive of the SDK this binary was
// built with. No credential: it is public code.

func (s *Server) serveSDKIndex(w http.ResponseWriter, r *http.Request) {
	b, err := python.Archive()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sum := sha256.Sum256(b)
	name := html.EscapeString(python.ArchiveName())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>dspool Python SDK</title></head><body>\n"+
		"<p>pip install --no-index --find-links THIS_PAGE dspool</p>\n"+
		"<a href=\"%s#sha256=%s\">%s</a>\n</body></html>\n", name, hex.EncodeToString(sum[:]), name)
}

func (s *Server) serveSDK(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("file") != python.ArchiveName() {
		writeError(w, dspool.Errorf(dspool.ENotFound, "no %s here: this control plane serves the Python SDK as /sdk/%s (the list is /sdk/)",
			r.PathValue("file"), python.ArchiveName()))
		return
	}
	b, err := python.Archive()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sum := sha256.Sum256(b)
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	http.ServeContent(w, r, python.ArchiveName(), time.Time{}, bytes.NewReader(b))
}

// Package python is dspool's Python SDK, the Python package dspool beside
// this file, as the control plane serves it: a source archive that `pip
// install URL` builds and installs on any node with no network (its build
// backend is in the archive and needs nothing but the standard library).
// The archive's bytes depend on the tree alone, so a binary serves the same
// archive every time. It never holds the SDK's logic: that is Python.
package python

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/dspool/dspool/internal/lazyregexp"
)

// tree is what the archive holds: what pip needs to build the SDK.
//
//go:embed pyproject.toml README.md build_backend/dspool_build.py dspool/*.py
var tree embed.FS

// epoch is the time of every entry of the archive.
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

var versionRE = lazyregexp.New(`(?m)^__version__ = "([^"]+)"$`)

// Version is the SDK's version, from dspool/_version.py.
func Version() string {
	b, err := tree.ReadFile("dspool/_version.py")
	if err != nil {
		panic(err) // embedded
	}
	m := versionRE.FindSubmatch(b)
	if m == nil {
		panic("python/dspool/_version.py has no __version__")
	}
	return string(m[1])
}

// ArchiveName is the archive's file name: dspool-VERSION.tar.gz.
func ArchiveName() string { return "dspool-" + Version() + ".tar.gz" }

// Archive returns the SDK's source archive: the tree under
// dspool-VERSION/, entries in order, owned by root, dated 1980-01-01.
var Archive = sync.OnceValues(archive)

func archive() ([]byte, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	top := "dspool-" + Version() + "/"
	err = fs.WalkDir(tree, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == "." {
			return err
		}
		h := &tar.Header{Name: top + path, ModTime: epoch, Format: tar.FormatPAX, Mode: 0o644, Typeflag: tar.TypeReg}
		if d.IsDir() {
			h.Name, h.Mode, h.Typeflag = h.Name+"/", 0o755, tar.TypeDir
			return tw.WriteHeader(h)
		}
		b, err := tree.ReadFile(path)
		if err != nil {
			return err
		}
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("the Python SDK's archive: %w", err)
	}
	return buf.Bytes(), nil
}

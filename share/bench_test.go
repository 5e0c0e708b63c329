package share_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dspool/dspool/share"
)

// BenchmarkOpen is the cost of reading a log safely (share.Open, as its
// user) beside a plain os.Open of the same file.
func BenchmarkOpen(b *testing.B) {
	root, _, o := setup(b)
	path := filepath.Join(root, "jobs/1/ok.log")
	b.Run("os.Open", func(b *testing.B) {
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("share.Open", func(b *testing.B) {
		for b.Loop() {
			f, err := share.Open(root, "jobs/1/ok.log", o)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("share.As+Open", func(b *testing.B) {
		for b.Loop() {
			err := share.As(o.UID, o.GID, func() error {
				f, err := share.Open(root, "jobs/1/ok.log", o)
				if err == nil {
					f.Close()
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

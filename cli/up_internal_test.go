package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultShareDir(t *testing.T) {
	tests := []struct {
		name       string
		legacy     []string // files in DATA/share
		root       bool
		want       string // relative to the temp dir, or absolute
		wantInside bool
	}{
		{"new installation", nil, false, "data-share", false},
		{"new installation as root", nil, true, "/srv/dspool", false},
		{"empty share inside, from an earlier start", []string{}, false, "data-share", false},
		{"homes inside, from an earlier dspool", []string{"home"}, false, "data/share", true},
		{"homes inside, as root", []string{"home"}, true, "data/share", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			if tt.legacy != nil {
				if err := os.MkdirAll(filepath.Join(data, "share"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.legacy {
				if err := os.Mkdir(filepath.Join(data, "share", f), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			want := tt.want
			if !filepath.IsAbs(want) {
				want = filepath.Join(dir, want)
			}
			got, inside := defaultShareDir(data, tt.root)
			if got != want || inside != tt.wantInside {
				t.Errorf("got %s, inside %v; want %s, inside %v", got, inside, want, tt.wantInside)
			}
		})
	}
}

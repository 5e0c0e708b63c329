package yamljson_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dspool/dspool/yamljson"
)

// bomb writes a billion-laughs document: levels lists of nine aliases of
// the list before, each alias written after sep.
func bomb(sep string, levels int) string {
	var b strings.Builder
	b.WriteString("a: &a [x, x, x, x, x, x, x, x, x]\n")
	prev := "a"
	for i := 0; i < levels; i++ {
		name := string(rune('b' + i))
		items := make([]string, 9)
		for k := range items {
			items[k] = sep + "*" + prev
		}
		fmt.Fprintf(&b, "%s: &%s [%s]\n", name, name, strings.Join(items, ","))
		prev = name
	}
	return b.String()
}

// blockBomb is the same bomb written as block sequences and merge keys.
func blockBomb(levels int) string {
	var b strings.Builder
	b.WriteString("a: &a {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x}\n")
	prev := "a"
	for i := 0; i < levels; i++ {
		name := string(rune('b' + i))
		fmt.Fprintf(&b, "%s: &%s\n", name, name)
		for k := 0; k < 9; k++ {
			fmt.Fprintf(&b, "  - *%s\n", prev)
		}
		prev = name
	}
	return b.String()
}

func TestConvert(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"mapping", "name: cpu\nnode: {cpus: 0.5, memory: 512MiB}\ncount: 2\n", `{"count":2,"name":"cpu","node":{"cpus":0.5,"memory":"512MiB"}}`},
		{"list", "pools:\n  - name: a\n  - name: b\n", `{"pools":[{"name":"a"},{"name":"b"}]}`},
		{"a few aliases", "base: &n {cpus: 1}\na: *n\nb: *n\n", `{"a":{"cpus":1},"b":{"cpus":1},"base":{"cpus":1}}`},
		{"merge key", "base: &n {cpus: 1}\na: {<<: *n, gpus: 2}\n", `{"a":{"cpus":1,"gpus":2},"base":{"cpus":1}}`},
		{"keys that are not text", "1: a\ntrue: b\n", `{"1":"a","true":"b"}`},
		{"timestamp stays text", "at: 2026-11-26T10:00:00Z\n", `{"at":"2026-11-26T10:00:00Z"}`},
		{"html stays as written", "setup: echo '<a>' && true\n", `{"setup":"echo '<a>' && true"}`},
		{"null", "a: ~\n", `{"a":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := yamljson.Convert([]byte(tt.yaml), yamljson.Limits{})
			if err != nil || string(got) != tt.want {
				t.Errorf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestConvertRefuses(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		lim      yamljson.Limits
		tooLarge bool
	}{
		{"bomb, aliases after spaces", bomb(" ", 12), yamljson.Limits{}, true},
		{"bomb, aliases after tabs", bomb("\t", 12), yamljson.Limits{}, true},
		{"bomb, aliases after carriage returns", bomb("\r", 12), yamljson.Limits{}, true},
		{"bomb, aliases after line breaks", bomb("\n  ", 12), yamljson.Limits{}, true},
		{"bomb, aliases right after commas", bomb("", 12), yamljson.Limits{}, true},
		{"bomb in block lists", blockBomb(12), yamljson.Limits{}, true},
		{"aliases under the limit, values over it", bomb(" ", 4), yamljson.Limits{Nodes: 1000, Aliased: 1 << 20}, true},
		{"too deep", strings.Repeat("[", 200) + strings.Repeat("]", 200), yamljson.Limits{}, false},
		{"duplicate key", "a: 1\na: 2\n", yamljson.Limits{}, false},
		{"two documents", "a: 1\n---\nb: 2\n", yamljson.Limits{}, false},
		{"infinite number", "a: .inf\n", yamljson.Limits{}, false},
		{"not a number", "a: .nan\n", yamljson.Limits{}, false},
		{"unknown alias", "a: *nowhere\n", yamljson.Limits{}, false},
		{"self-referring anchor", "a: &a [*a]\n", yamljson.Limits{}, false},
		{"malformed", "pools: [\n  - name: x", yamljson.Limits{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := yamljson.Convert([]byte(tt.yaml), tt.lim)
			if err == nil {
				t.Fatalf("got %.80s, want a refusal", got)
			}
			if errors.Is(err, yamljson.ErrTooLarge) != tt.tooLarge {
				t.Errorf("got %v; want ErrTooLarge: %v", err, tt.tooLarge)
			}
		})
	}
}

// TestBombStaysSmall decodes the alias bomb and checks that the decoder
// stopped near its limit rather than after building the document.
func TestBombStaysSmall(t *testing.T) {
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := yamljson.Convert([]byte(bomb("\t", 12)), yamljson.Limits{}); !errors.Is(err, yamljson.ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
	})
	if allocs > 200_000 {
		t.Errorf("got %.0f allocations for a refused bomb, want at most 200,000", allocs)
	}
}

func FuzzConvert(f *testing.F) {
	for _, s := range []string{"a: 1\n", "pools:\n  - name: a\n", "base: &n {cpus: 1}\na: {<<: *n}\n",
		bomb("\t", 6), bomb("\r", 6), bomb("", 6), blockBomb(5), "a: &a [*a]\n", "[[[[[]]]]]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		js, err := yamljson.Convert(data, yamljson.Limits{Nodes: 5000, Aliased: 500})
		if err != nil {
			return
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			t.Fatalf("Convert(%q) = %s, not JSON: %v", data, js, err)
		}
		if len(js) > 64*len(data)+5000*64 {
			t.Fatalf("Convert(%q) grew to %d bytes of JSON", data, len(js))
		}
	})
}

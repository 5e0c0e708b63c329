// Package poolfile reads pool definitions from the YAML files users write
// (`dspool pool apply -f pools.yaml`). It only parses and validates; it never
// talks to a server.
package poolfile

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/dspool/dspool"
	"github.com/goccy/go-yaml"
)

// MaxSize bounds a pool file before any parsing.
const MaxSize = 1 << 20

// maxAliases bounds YAML aliases, which could otherwise expand a small file
// into a huge document.
const maxAliases = 64

// Parse reads either a list of pools under `pools:` or a single pool
// document, validates every pool and fills its defaults. Errors name the
// field, e.g. "pools[1].node.cpus: must be ...".
func Parse(data []byte) ([]*dspool.Pool, error) {
	if len(data) > MaxSize {
		return nil, dspool.Invalid("file", "is %d bytes: at most %d", len(data), MaxSize)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, dspool.Invalid("file", "contains a NUL byte: is it a YAML text file?")
	}
	if n := countAliases(data); n > maxAliases {
		return nil, dspool.Invalid("file", "uses %d YAML aliases: at most %d", n, maxAliases)
	}
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return nil, dspool.Invalid("file", "is not valid YAML: %s", yaml.FormatError(err, false, true))
	}
	top, ok := generic.(map[string]any)
	if !ok {
		return nil, dspool.Invalid("file", "must be a mapping: either `pools:` with a list, or one pool with `name:`")
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, dspool.Invalid("file", "cannot be read as data: %v", err)
	}
	var pools []*dspool.Pool
	prefix := "pools[%d]."
	if _, list := top["pools"]; list {
		var raw struct {
			Pools []rawJSON `json:"pools"`
		}
		if err := dspool.DecodeJSON(js, &raw); err != nil {
			return nil, inFile(err)
		}
		for i, r := range raw.Pools {
			var p dspool.Pool
			if err := decodePool(fmt.Sprintf(prefix, i), r, &p); err != nil {
				return nil, err
			}
			pools = append(pools, &p)
		}
	} else {
		prefix = ""
		var p dspool.Pool
		if err := decodePool("", js, &p); err != nil {
			return nil, err
		}
		pools = append(pools, &p)
	}
	if len(pools) == 0 {
		return nil, dspool.Invalid("pools", "is empty: define at least one pool")
	}
	seen := map[string]bool{}
	for i, p := range pools {
		pre := ""
		if prefix != "" {
			pre = fmt.Sprintf(prefix, i)
		}
		if err := p.Normalize(pre); err != nil {
			return nil, err
		}
		if seen[p.Name] {
			return nil, dspool.Invalid(pre+"name", "pool %s is defined twice", p.Name)
		}
		seen[p.Name] = true
	}
	return pools, nil
}

type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// inFile names the file as the field of an error about the document as a
// whole.
func inFile(err error) error {
	if e, ok := err.(*dspool.Error); ok && e.Field == "" {
		e.Field = "file"
	}
	return err
}

func decodePool(prefix string, js []byte, p *dspool.Pool) error {
	err := inFile(dspool.DecodeJSON(js, p))
	if e, ok := err.(*dspool.Error); ok && prefix != "" {
		e.Field = prefix + strings.TrimPrefix(e.Field, ".")
		if e.Field == prefix {
			e.Field = strings.TrimSuffix(prefix, ".")
		}
	}
	return err
}

func countAliases(data []byte) int {
	n := 0
	for i := 0; i+1 < len(data); i++ {
		if data[i] == '*' && (i == 0 || data[i-1] == ' ' || data[i-1] == '[' || data[i-1] == ',' || data[i-1] == '\n' || data[i-1] == '-') && data[i+1] != ' ' {
			n++
		}
	}
	return n
}

// Package poolfile reads pool definitions from the YAML files users write
// (`dspool pool apply -f pools.yaml`). It only parses and validates; it never
// talks to a server.
package poolfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/yamljson"
)

// MaxSize bounds a pool file before any parsing.
const MaxSize = 1 << 20

// limits bound the decoded pool file: a thousand pools of a few dozen values
// each fit; an alias bomb stops after a few megabytes.
var limits = yamljson.Limits{Nodes: 100_000, Aliased: 10_000, Depth: 32}

// Parse reads either a list of pools under `pools:` or a single pool
// document, validates every pool and fills its defaults. Errors name the
// field, e.g. "pools[1].node.cpus: must be ...". A pool's provider block is
// checked by the control plane it is applied to; ParseWith checks it here.
func Parse(data []byte) ([]*dspool.Pool, error) { return ParseWith(data, nil) }

// ParseWith is Parse that also checks each pool's provider and its
// settings against kinds (nil: not checked).
func ParseWith(data []byte, kinds *autoscale.Registry) ([]*dspool.Pool, error) {
	if len(data) > MaxSize {
		return nil, dspool.Invalid("file", "is %d bytes: at most %d", len(data), MaxSize)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, dspool.Invalid("file", "contains a NUL byte: is it a YAML text file?")
	}
	js, err := yamljson.Convert(data, limits)
	if errors.Is(err, yamljson.ErrTooLarge) {
		return nil, dspool.Invalid("file", "is %v: write the pools out with fewer YAML aliases (*name) and values", err)
	}
	if err != nil {
		return nil, dspool.Invalid("file", "is not valid YAML: %v", err)
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(js, &top) != nil {
		return nil, dspool.Invalid("file", "must be a mapping: either `pools:` with a list, or one pool with `name:`")
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
		if kinds != nil {
			if err := kinds.Check(pre, p); err != nil {
				return nil, err
			}
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

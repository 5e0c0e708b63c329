// Package yamljson turns the YAML that people write (pool files, the server's
// config) into JSON for dspool.DecodeJSON, within fixed bounds on how large
// the decoded document may grow. It never reads files or talks to a server.
//
// The bounds are the YAML library's own loader limits, which count what the
// decoder really builds: a limit found by scanning the text would miss an
// alias written after a tab, a carriage return or in a flow sequence, and an
// alias bomb of a few hundred bytes would expand to gigabytes.
package yamljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"go.yaml.in/yaml/v4"
	"go.yaml.in/yaml/v4/plugin/loaderlimits"
)

// Limits bound one document. The zero value of a field means its default.
type Limits struct {
	// Nodes bounds the values the decoder builds (scalars, lists and
	// mappings), whether written out or reached through an alias: the
	// decoded size of the document. Default 100,000.
	Nodes int
	// Aliased bounds the values built by expanding aliases and merge keys.
	// Default 10,000.
	Aliased int
	// Depth bounds the nesting of lists and mappings. Default 100.
	Depth int
}

func (l Limits) withDefaults() Limits {
	if l.Nodes <= 0 {
		l.Nodes = 100_000
	}
	if l.Aliased <= 0 {
		l.Aliased = 10_000
	}
	if l.Depth <= 0 {
		l.Depth = 100
	}
	return l
}

// ErrTooLarge marks a document refused for passing a limit.
var ErrTooLarge = errors.New("too large when decoded")

// Convert decodes one YAML document and returns it as JSON. A document that
// passes a limit is refused with an error that wraps ErrTooLarge, as soon as
// the decoder passes it and before it builds more.
func Convert(data []byte, lim Limits) ([]byte, error) {
	lim = lim.withDefaults()
	var tooLarge error
	limits := loaderlimits.New(
		loaderlimits.DepthValue(lim.Depth),
		loaderlimits.AliasFunc(func(aliased, built int) error {
			switch {
			case aliased > lim.Aliased:
				tooLarge = fmt.Errorf("%w: aliases expand to more than %d values", ErrTooLarge, lim.Aliased)
			case built > lim.Nodes:
				tooLarge = fmt.Errorf("%w: more than %d values", ErrTooLarge, lim.Nodes)
			default:
				return nil
			}
			return tooLarge
		}))
	var doc any
	if err := yaml.Load(data, &doc, yaml.WithPlugin(limits), yaml.WithUniqueKeys(true)); err != nil {
		if tooLarge != nil {
			return nil, tooLarge
		}
		return nil, err
	}
	v, err := jsonable(doc)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonable rewrites what the YAML decoder builds into values encoding/json
// takes: mappings with keys other than text get their keys as text, and the
// numbers JSON cannot hold are refused.
func jsonable(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			v[k] = j
		}
		return v, nil
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = j
		}
		return m, nil
	case []any:
		for i, e := range v {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			v[i] = j
		}
		return v, nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("the number %v has no JSON form: write a finite number", v)
		}
	}
	return v, nil
}

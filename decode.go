package dspool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// DecodeJSON decodes data into the struct pointed to by v, refusing unknown
// fields, and returns an EInvalid error that names the offending field by its
// JSON path ("node.cpus") when a value has the wrong type or form.
func DecodeJSON(data []byte, v any) error {
	if !utf8.Valid(data) {
		return Invalid(invalidUTF8Field(data), "is not valid UTF-8")
	}
	return decodeInto("", data, reflect.ValueOf(v).Elem())
}

// invalidUTF8Field finds the JSON path of the first invalid UTF-8 byte, for
// an error that names it ("" when it is outside any field).
func invalidUTF8Field(data []byte) string {
	bad := 0
	for bad < len(data) {
		r, size := utf8.DecodeRune(data[bad:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		bad += size
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		key    string
		index  int
		isList bool
		expect bool // next string in an object is a key
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for i, f := range stack {
			if f.isList {
				fmt.Fprintf(&b, "[%d]", f.index)
			} else if f.key != "" {
				if i > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	// value records that a value (scalar or closed container) was read in
	// the innermost container.
	value := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].isList {
				stack[n-1].index++
			} else {
				stack[n-1].expect = true
			}
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return path()
		}
		top := len(stack) - 1
		isKey := top >= 0 && !stack[top].isList && stack[top].expect
		if dec.InputOffset() > int64(bad) {
			if top >= 0 && stack[top].isList {
				stack[top].index++
			} else if s, ok := tok.(string); ok && isKey {
				stack[top].key = s
			}
			return path()
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top >= 0 && stack[top].isList {
					stack[top].index++
				}
				stack = append(stack, frame{isList: t == '[', index: -1, expect: t == '{'})
			default:
				stack = stack[:top]
				if top > 0 && !stack[top-1].isList {
					stack[top-1].expect = true
				}
			}
		default:
			if isKey {
				stack[top].key, _ = t.(string)
				stack[top].expect = false
			} else {
				value()
			}
		}
	}
}

func decodeInto(prefix string, data []byte, rv reflect.Value) error {
	data = bytes.TrimSpace(data)
	// Pointers to structs and lists of structs are walked too, so that an
	// error deep inside names its whole path: autoscale.rules[1].threshold.
	if t := rv.Type(); !implementsUnmarshaler(t) {
		switch {
		case t.Kind() == reflect.Pointer && walkable(t.Elem()):
			if bytes.Equal(data, []byte("null")) {
				rv.SetZero()
				return nil
			}
			if rv.IsNil() {
				rv.Set(reflect.New(t.Elem()))
			}
			return decodeInto(prefix, data, rv.Elem())
		case t.Kind() == reflect.Slice && walkable(t.Elem()):
			if bytes.Equal(data, []byte("null")) {
				rv.SetZero()
				return nil
			}
			var items []json.RawMessage
			if err := json.Unmarshal(data, &items); err != nil {
				return Invalid(strings.TrimSuffix(prefix, "."), "must be a list")
			}
			out := reflect.MakeSlice(t, len(items), len(items))
			for i, item := range items {
				if err := decodeInto(fmt.Sprintf("%s[%d].", strings.TrimSuffix(prefix, "."), i), item, out.Index(i)); err != nil {
					return err
				}
			}
			rv.Set(out)
			return nil
		}
	}
	if rv.Kind() != reflect.Struct || rv.Type().Implements(unmarshalerType) || reflect.PointerTo(rv.Type()).Implements(unmarshalerType) {
		return decodeValue(prefix, data, rv)
	}
	if bytes.Equal(data, []byte("null")) {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		what := "the body"
		if prefix != "" {
			what = prefix
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Invalid(strings.TrimSuffix(prefix, "."), "%s must be a mapping of fields, not %s", what, valueName(te.Value))
		}
		return Invalid(strings.TrimSuffix(prefix, "."), "%s must be a mapping of fields: %s", what, cleanJSONError(err))
	}
	known := map[string]reflect.Value{}
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" {
			return fmt.Errorf("decode: embedded field %s not supported", f.Name)
		}
		if name == "" {
			name = f.Name
		}
		known[name] = rv.Field(i)
	}
	for k, raw := range fields {
		fv, ok := known[k]
		if !ok {
			return Invalid(prefix+k, "is not a known field: check its spelling")
		}
		if err := decodeInto(prefix+k+".", raw, fv); err != nil {
			return err
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

// walkable reports whether decodeInto can walk a struct of type t field by
// field: it decodes itself in no special way and embeds nothing.
func walkable(t reflect.Type) bool {
	if t.Kind() != reflect.Struct || implementsUnmarshaler(t) {
		return false
	}
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Anonymous {
			return false
		}
	}
	return true
}

func implementsUnmarshaler(t reflect.Type) bool {
	return t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)
}

func decodeValue(prefix string, data []byte, rv reflect.Value) error {
	field := strings.TrimSuffix(prefix, ".")
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(rv.Addr().Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			sub := field
			if te.Field != "" {
				sub = field + "." + te.Field
			}
			return Invalid(sub, "must be %s, not %s", kindName(te.Type), valueName(te.Value))
		}
		return Invalid(field, "%s", cleanJSONError(err))
	}
	return nil
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	}
	return "a " + t.Kind().String()
}

// valueName names the kind of value a document held, in words that fit
// JSON and YAML alike: "a list", not "a JSON array".
func valueName(v string) string {
	switch v {
	case "array":
		return "a list"
	case "object":
		return "a mapping"
	case "bool":
		return "true or false"
	case "string", "number":
		return "a " + v
	}
	if strings.HasPrefix(v, "number ") { // "number -1", "number 1.5"
		return "the number " + strings.TrimPrefix(v, "number ")
	}
	return v
}

func cleanJSONError(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

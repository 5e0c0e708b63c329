package dspool_test

import (
	"testing"

	"github.com/dspool/dspool"
)

func TestDecodeInvalidUTF8NamesField(t *testing.T) {
	tests := map[string]string{
		"{\"command\":[\"echo\",\"\xff\"]}":            "command[1]",
		"{\"name\":\"\xfe\",\"command\":[\"x\"]}":      "name",
		"{\"env\":{\"A\":\"ok\",\"B\":\"\xff\"}}":      "env.B",
		"{\"command\":[\"x\"],\"pool\":\"p\xc3\x28\"}": "pool",
	}
	for body, want := range tests {
		var s dspool.JobSpec
		err := dspool.DecodeJSON([]byte(body), &s)
		e, ok := err.(*dspool.Error)
		if !ok || e.Field != want {
			t.Errorf("DecodeJSON(%q) = %v, want an error naming %s", body, err, want)
		}
	}
}

func TestDecodeNotAnObject(t *testing.T) {
	var s dspool.JobSpec
	err := dspool.DecodeJSON([]byte(`[]`), &s)
	if err == nil || err.Error() != "the body must be a mapping of fields, not a list" {
		t.Errorf("got %v", err)
	}
}

// Type errors say what was wanted and found in words that fit the YAML of
// pool and server config files as well as JSON.
func TestDecodeTypeErrorsInPlainWords(t *testing.T) {
	for body, want := range map[string]string{
		`{"command":"python3"}`:            "command: must be a list, not a string",
		`{"command":["x"],"gpus":"two"}`:   "gpus: must be a whole number, not a string",
		`{"command":["x"],"name":["a"]}`:   "name: must be a string, not a list",
		`{"command":["x"],"env":[]}`:       "env: must be a mapping, not a list",
		`{"command":["x"],"retries":true}`: "retries: must be a whole number, not true or false",
	} {
		var s dspool.JobSpec
		if err := dspool.DecodeJSON([]byte(body), &s); err == nil || err.Error() != want {
			t.Errorf("DecodeJSON(%s) = %v, want %q", body, err, want)
		}
	}
}

// Errors inside nested objects and lists of objects name the whole path.
func TestDecodeNamesNestedPaths(t *testing.T) {
	tests := map[string]string{
		`{"name":"p","autoscale":{"max":"x"}}`:                                                     "autoscale.max",
		`{"name":"p","autoscale":{"max":2,"rules":[{"metric":"queued_jobs"},{"threshold":"hi"}]}}`: "autoscale.rules[1].threshold",
		`{"name":"p","autoscale":{"max":2,"schedules":[{"dayz":["mon"]}]}}`:                        "autoscale.schedules[0].dayz",
		`{"name":"p","autoscale":{"rules":{}}}`:                                                    "autoscale.rules",
		`{"name":"p","sessions":{"cpus":"many"}}`:                                                  "sessions.cpus",
	}
	for body, want := range tests {
		var p dspool.Pool
		err := dspool.DecodeJSON([]byte(body), &p)
		e, ok := err.(*dspool.Error)
		if !ok || e.Field != want {
			t.Errorf("DecodeJSON(%s) = %v, want an error naming %s", body, err, want)
		}
	}
	// null leaves an optional part out, and a valid policy decodes whole.
	var p dspool.Pool
	if err := dspool.DecodeJSON([]byte(`{"name":"p","autoscale":null,"sessions":null}`), &p); err != nil || p.Autoscale != nil || p.Sessions != nil {
		t.Fatalf("nulls: %v, %+v", err, p)
	}
	if err := dspool.DecodeJSON([]byte(`{"name":"p","autoscale":{"max":3,"rules":[{"metric":"cpu_percent","operator":">","threshold":70.5,"action":"out"}]}}`), &p); err != nil ||
		p.Autoscale == nil || len(p.Autoscale.Rules) != 1 || p.Autoscale.Rules[0].Threshold != 70.5 {
		t.Fatalf("valid policy: %v, %+v", err, p.Autoscale)
	}
}

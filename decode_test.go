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
	if err == nil || err.Error() != "the body must be a JSON object, not a JSON array" {
		t.Errorf("got %v", err)
	}
}

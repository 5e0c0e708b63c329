package agent_test

import (
	"reflect"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
)

func TestParseIDFile(t *testing.T) {
	r := dspool.UIDRange{From: 20000, To: 21000}
	tests := []struct {
		name  string
		text  string
		group bool
		want  []dspool.HostAccount
	}{
		{"passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:20000:20000::/h:/bin/sh\nbob:x:21001:21001::/h:/bin/sh\ncarol:x:21000:5::/h:/bin/sh\n", false,
			[]dspool.HostAccount{{Name: "alice", ID: 20000}, {Name: "carol", ID: 21000}}},
		{"group", "lab:x:20500:alice,bob\nusers:x:100:\n", true, []dspool.HostAccount{{Name: "lab", ID: 20500, Group: true}}},
		{"bad lines", "\n# comment:x:20001:1\n+nis::20002:\nshort:x\nnum:x:abc:1\n:x:20003:1\n", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := agent.ParseIDFile(tt.text, tt.group, r)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

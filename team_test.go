package dspool_test

import (
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

func TestTeamFor(t *testing.T) {
	open := &dspool.Pool{Name: "default"}
	gpu := &dspool.Pool{Name: "gpu", Teams: []string{"vision", "nlp"}}
	tests := []struct {
		name     string
		pool     *dspool.Pool
		memberOf []string
		asked    string
		admin    bool
		want     string
		code     string // error code; "" for none
		msg      string // part of the error's message
	}{
		{name: "open pool, no team", pool: open, want: ""},
		{name: "open pool, the user's only team", pool: open, memberOf: []string{"vision"}, want: "vision"},
		{name: "open pool, several teams: ask", pool: open, memberOf: []string{"nlp", "vision"}, code: dspool.EInvalid, msg: "you are in teams nlp and vision, and pool default is for everyone: say with --team which of them this job is for, e.g. --team nlp"},
		{name: "open pool, several teams in any order: named in order", pool: open, memberOf: []string{"vision", "nlp"}, code: dspool.EInvalid, msg: "you are in teams nlp and vision, and pool default"},
		{name: "open pool, several teams, one asked", pool: open, memberOf: []string{"nlp", "vision"}, asked: "vision", want: "vision"},
		{name: "granted pool, the one granted team", pool: gpu, memberOf: []string{"audio", "nlp"}, want: "nlp"},
		{name: "granted pool, two granted teams", pool: gpu, memberOf: []string{"nlp", "vision"}, code: dspool.EInvalid, msg: "you are in teams nlp and vision, and each may use pool gpu: say with --team which of them this job is for, e.g. --team nlp"},
		{name: "granted pool, no granted team", pool: gpu, memberOf: []string{"audio"}, code: dspool.EForbidden, msg: "pool gpu is for teams nlp and vision, and you are in none of them: ask an admin, or a maintainer of one of them, to add you (`dspool team show nlp`)"},
		{name: "granted pool, a team not granted asked", pool: gpu, memberOf: []string{"audio", "nlp"}, asked: "audio", code: dspool.EForbidden, msg: "pool gpu is for teams nlp and vision, not team audio"},
		{name: "a team the user is not in", pool: open, memberOf: []string{"nlp"}, asked: "vision", code: dspool.EForbidden, msg: "you are not a member of team vision (you are in team nlp)"},
		{name: "an admin uses any pool", pool: gpu, admin: true, want: ""},
		{name: "an admin names any team", pool: gpu, asked: "audio", admin: true, want: "audio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dspool.TeamFor(tt.pool, tt.memberOf, tt.asked, tt.admin)
			if dspool.ErrorCode(err) != tt.code || err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want code %q with %q", err, tt.code, tt.msg)
			}
			if got != tt.want {
				t.Errorf("team %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPoolTeamsAreChecked(t *testing.T) {
	for teams, want := range map[string]string{
		"Vision":     "pools[0].teams[0]: \"Vision\" is not a valid name",
		"nlp,nlp":    "pools[0].teams[1]: team nlp is listed twice",
		"nlp,vision": "",
	} {
		p := dspool.Pool{Name: "gpu", Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, Teams: strings.Split(teams, ",")}
		err := p.Normalize("pools[0].")
		if got := ""; err != nil {
			got = err.Error()
			if !strings.HasPrefix(got, want) || want == "" {
				t.Errorf("teams %s: %q, want %q", teams, got, want)
			}
		} else if want != "" {
			t.Errorf("teams %s: accepted, want %q", teams, want)
		}
	}
}

func TestLimits(t *testing.T) {
	gpus, nodes := 8, 10
	cpus, mem := dspool.MilliCPU(64000), dspool.Bytes(512<<30)
	l := dspool.Limits{CPUs: &cpus, Memory: &mem, GPUs: &gpus, Nodes: &nodes}
	if got := l.String(); got != "64 cpus, 512GiB memory, 8 gpus, 10 nodes" {
		t.Errorf("String: %q", got)
	}
	one, half := 1, dspool.MilliCPU(500)
	if got := (dspool.Limits{CPUs: &half, GPUs: &one, Nodes: &one}).String(); got != "0.5 cpus, 1 gpu, 1 node" {
		t.Errorf("String of ones: %q, want 0.5 cpus, 1 gpu, 1 node", got)
	}
	if got := (dspool.Limits{}).String(); got != "none" {
		t.Errorf("no limits: %q", got)
	}
	if err := l.Fits("team vision", 1000, 1<<30, 9); dspool.ErrorCode(err) != dspool.EInvalid || !strings.HasPrefix(err.Error(), "gpus: this job can never run: it asks for 9 gpus and team vision may hold 8 at once") {
		t.Errorf("Fits: %v", err)
	}
	neg := -1
	if err := (dspool.Limits{Nodes: &neg}).Validate(); dspool.ErrorCode(err) != dspool.EInvalid || !strings.HasPrefix(err.Error(), "nodes:") {
		t.Errorf("Validate of nodes -1: %v", err)
	}
	var decoded dspool.Limits
	if err := dspool.DecodeJSON([]byte(`{"cpus": 2.5, "memory": "4GiB", "gpus": 0}`), &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.String() != "2.5 cpus, 4GiB memory, 0 gpus" {
		t.Errorf("decoded: %s", decoded)
	}
	if err := dspool.DecodeJSON([]byte(`{"gpu": 1}`), &decoded); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Errorf("an unknown field: %v, want invalid", err)
	}
}

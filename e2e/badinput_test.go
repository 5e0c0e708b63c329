package e2e_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// TestBadInput sends malformed pool files, impossible jobs and hostile
// request bodies: each is refused naming the field, and nothing is stored.
func TestBadInput(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(5)})
	admin := up.env()
	pools := poolsJSON(t, up)
	jobs := len(listIDs(t, admin, "job", "list", "--all-users", "--limit", "10000"))

	t.Run("pool files", func(t *testing.T) {
		for _, tc := range []struct {
			name, yaml, field string
		}{
			{"malformed YAML", "name: broken\nnode: {cpus: 1\n", "file"},
			{"negative cpus", "name: neg\nprovider: static\nnode: {cpus: -1, memory: 1GiB}\ncount: 1\n", "node.cpus"},
			{"negative memory in a list", "pools:\n  - name: neg\n    node: {cpus: 1, memory: -5}\n", "pools[0].node.memory"},
			{"zero cpus", "name: zero\nnode: {cpus: 0, memory: 1GiB}\n", "node.cpus"},
			{"unknown field", "name: typo\nnode: {cpus: 1, memory: 1GiB}\ncuont: 2\n", "cuont"},
			{"bad provider", "name: prov\nprovider: cloud9\nnode: {cpus: 1, memory: 1GiB}\n", "provider"},
			{"second pool bad", "pools:\n  - name: good\n    node: {cpus: 1, memory: 1GiB}\n  - name: bad\n    node: {cpus: 1, memory: 1GiB}\n    count: -1\n", "pools[1].count"},
			{"alias bomb, tabs before each alias", aliasBomb("\t"), "file"},
			{"alias bomb, carriage returns before each alias", aliasBomb("\r"), "file"},
			{"bidi override in a label", "name: lab\nnode: {cpus: 1, memory: 1GiB}\nlabels: {zone: \"a\u202eb\"}\n", "labels.zone"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := writeFile(t, "pool-*.yaml", tc.yaml)
				out, errs, code := cli(t, admin, "pool", "apply", "-f", f)
				if code == 0 {
					t.Fatalf("pool apply -f of a bad file exited 0: %s", out)
				}
				if !strings.Contains(errs, tc.field+": ") {
					t.Errorf("pool apply -f: stderr %q does not name %q", errs, tc.field)
				}
			})
		}
		if got := poolsJSON(t, up); got != pools {
			t.Errorf("pools after bad pool files:\n%s\nwant as before:\n%s", got, pools)
		}
	})

	t.Run("impossible jobs", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			args  []string
			field string
		}{
			{"memory never fits", []string{"--memory", "100TiB", "--", "true"}, "memory"},
			{"cpus never fit", []string{"--cpus", "100000", "--", "true"}, "cpus"},
			{"no such pool", []string{"--pool", "nosuch", "--", "true"}, "pool"},
			{"negative cpus", []string{"--cpus", "-1", "--", "true"}, "cpus"},
			{"reserved env", []string{"--env", "LD_PRELOAD=/tmp/x.so", "--", "true"}, "LD_PRELOAD"},
			{"workdir escapes", []string{"--workdir", "../other", "--", "true"}, "workdir"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, errs, code := cli(t, admin, append([]string{"job", "submit"}, tc.args...)...)
				if code == 0 {
					t.Fatalf("job submit %s exited 0: %s", strings.Join(tc.args, " "), out)
				}
				if !strings.Contains(errs, tc.field+": ") {
					t.Errorf("job submit %s: stderr %q does not name %q", strings.Join(tc.args, " "), errs, tc.field)
				}
			})
		}
	})

	t.Run("raw HTTP", func(t *testing.T) {
		token := up.adminToken(t)
		big := `{"command":["echo","` + strings.Repeat("x", 1<<20) + `"]}`
		for _, tc := range []struct {
			name    string
			body    string
			chunked bool // no Content-Length: the limit must hold while reading
			status  int
			field   string
		}{
			{name: "body over 1 MiB", body: big, status: 413},
			{name: "chunked body over 1 MiB", body: big, chunked: true, status: 413},
			{name: "NUL in command", body: `{"command":["a\u0000b"]}`, status: 400, field: "command[0]"},
			{name: "negative cpus", body: `{"command":["true"],"cpus":-1}`, status: 400, field: "cpus"},
			{name: "unknown field", body: `{"command":["true"],"colour":"blue"}`, status: 400, field: "colour"},
			{name: "huge gpus", body: `{"command":["true"],"gpus":1e12}`, status: 400, field: "gpus"},
			{name: "negative memory", body: `{"command":["true"],"memory":-1}`, status: 400, field: "memory"},
			{name: "invalid UTF-8 in name", body: "{\"command\":[\"true\"],\"name\":\"\xff\xfe\"}", status: 400, field: "name"},
			{name: "bidi override in name", body: `{"command":["true"],"name":"report\u202efdp.exe"}`, status: 400, field: "name"},
			{name: "zero-width space in name", body: `{"command":["true"],"name":"ad\u200bmin"}`, status: 400, field: "name"},
			{name: "invalid JSON", body: `{"command":["true"`, status: 400},
			{name: "not an object", body: `["true"]`, status: 400},
			{name: "empty command", body: `{"command":[]}`, status: 400, field: "command"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, e := post(t, up.URL+"/api/v1/jobs", token, tc.body, tc.chunked)
				if status != tc.status {
					t.Fatalf("POST /api/v1/jobs: status %d, want %d (error %+v)", status, tc.status, e)
				}
				if e == nil {
					t.Fatalf("status %d with no JSON error body", status)
				}
				if tc.field != "" && e.Field != tc.field {
					t.Errorf("error field: got %q, want %q (message %q)", e.Field, tc.field, e.Message)
				}
			})
		}
	})

	if got := len(listIDs(t, admin, "job", "list", "--all-users", "--limit", "10000")); got != jobs {
		t.Errorf("after refused submissions the store has %d jobs, want %d as before", got, jobs)
	}
}

// aliasBomb writes a pool file of twelve lists, each of nine aliases of the
// list before (9^12 values once expanded), with sep before each alias.
func aliasBomb(sep string) string {
	var b strings.Builder
	b.WriteString("a: &a [x, x, x, x, x, x, x, x, x]\n")
	prev := "a"
	for i := 0; i < 12; i++ {
		name := string(rune('b' + i))
		b.WriteString(name + ": &" + name + " [")
		for k := 0; k < 9; k++ {
			if k > 0 {
				b.WriteString(",")
			}
			b.WriteString(sep + "*" + prev)
		}
		b.WriteString("]\n")
		prev = name
	}
	return b.String()
}

// post sends body to url with a bearer token and returns the status and the
// decoded error, if the answer is one.
func post(t *testing.T, url, token, body string, chunked bool) (int, *dspool.Error) {
	t.Helper()
	var rd io.Reader = strings.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // hides the length from net/http
	}
	req, err := http.NewRequest("POST", url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error == nil {
		if resp.StatusCode >= 400 {
			t.Logf("status %d body %q", resp.StatusCode, bytes.TrimSpace(b))
		}
		return resp.StatusCode, nil
	}
	return resp.StatusCode, eb.Error
}

package dspool_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dspool/dspool"
)

func TestParseArray(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []int
		max      int
		str      string
	}{
		{"range", "0-4", []int{0, 1, 2, 3, 4}, 0, "0-4"},
		{"cap", "0-9%3", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 3, "0-9%3"},
		{"list and step", "1,3,10-20:5", []int{1, 3, 10, 15, 20}, 0, "1,3,10,15,20"},
		{"repeats once, sorted", "5,1-3,2", []int{1, 2, 3, 5}, 0, "1-3,5"},
		{"cap over tasks binds nothing", "0-1%5", []int{0, 1}, 0, "0-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := dspool.ParseArray("array", tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Indices, tc.want) || a.MaxRunning != tc.max || a.String() != tc.str {
				t.Fatalf("ParseArray(%q) = %v %%%d %q, want %v %%%d %q", tc.in, a.Indices, a.MaxRunning, a.String(), tc.want, tc.max, tc.str)
			}
		})
	}
	for _, bad := range []string{"", "a", "5-1", "0-9%0", "0-9%", "-1", "1:2", "0-10:0", "0-100000000", "0-100000", "01"} {
		if _, err := dspool.ParseArray("array", bad); dspool.ErrorCode(err) != dspool.EInvalid {
			t.Errorf("ParseArray(%q) = %v, want an invalid-input error", bad, err)
		}
	}
	if _, err := dspool.ParseArray("array", "0-99999"); err != nil {
		t.Errorf("the largest array: %v", err)
	}
}

func TestParseAfter(t *testing.T) {
	ds, err := dspool.ParseAfter("after", "ok:12,any:40,notok:40_7,13,ok:12")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dspool.FormatAfter(ds), "ok:12,any:40,notok:40_7,ok:13"; got != want {
		t.Fatalf("FormatAfter = %q, want %q", got, want)
	}
	for _, bad := range []string{"ok:", "maybe:12", "ok:0", "ok:-3", "ok:12_", "ok:12_x", ","} {
		if _, err := dspool.ParseAfter("after", bad); dspool.ErrorCode(err) != dspool.EInvalid {
			t.Errorf("ParseAfter(%q) = %v, want an invalid-input error", bad, err)
		}
	}
}

func TestParseSweep(t *testing.T) {
	rows, err := dspool.ParseSweep("sweep", strings.NewReader("LR, EPOCHS\n0.1,3\n\"0,01\",5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1]["LR"] != "0,01" || rows[0]["EPOCHS"] != "3" {
		t.Fatalf("CSV rows = %v", rows)
	}
	rows, err = dspool.ParseSweep("sweep", strings.NewReader("\n{\"A\": 1e3, \"B\": false, \"C\": \"x\"}\n\n{\"A\": 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["A"] != "1e3" || rows[0]["B"] != "false" || rows[1]["A"] != "2" {
		t.Fatalf("JSON lines rows = %v", rows)
	}
	for name, bad := range map[string]string{
		"empty": "", "header only": "A,B\n", "bad column": "1A\nx\n", "twice": "A,A\n1,2\n", "ragged": "A,B\n1\n",
		"reserved": "HOME\n/x\n", "not an object": "{\"A\": 1}\n[1]\n", "nested": "{\"A\": {\"b\": 1}}\n",
	} {
		if _, err := dspool.ParseSweep("sweep", strings.NewReader(bad)); dspool.ErrorCode(err) != dspool.EInvalid {
			t.Errorf("%s: ParseSweep = %v, want an invalid-input error", name, err)
		}
	}
}

func TestJobSpecArray(t *testing.T) {
	s := dspool.JobSpec{Command: []string{"true"}, Sweep: []map[string]string{{"A": "1"}, {"A": "2"}, {"A": "3"}}, Array: "%2"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s.Tasks == nil || len(s.Tasks.Indices) != 3 || s.Tasks.MaxRunning != 2 || s.Array != "0-2%2" {
		t.Fatalf("a sweep of 3 rows capped at 2: %+v %q", s.Tasks, s.Array)
	}
	s = dspool.JobSpec{Command: []string{"true"}, Sweep: []map[string]string{{"A": "1"}}, Array: "0-4"}
	var e *dspool.Error
	if err := s.Normalize(); !errors.As(err, &e) || e.Field != "sweep" {
		t.Fatalf("5 indices for 1 row: %v, want an error naming sweep", err)
	}
	s = dspool.JobSpec{Command: []string{"true"}, Sweep: []map[string]string{{"DSPOOL_X": "1"}}}
	if err := s.Normalize(); !errors.As(err, &e) || !strings.HasPrefix(e.Field, "sweep") {
		t.Fatalf("a reserved variable in a sweep: %v, want an error naming the sweep", err)
	}
}

// FuzzArrayParsers: what users write as --array, --after, a task's id and a
// sweep file never panics, every refusal names its field, and what is
// accepted reads back the same.
func FuzzArrayParsers(f *testing.F) {
	for _, s := range []string{"0-999%50", "1,3,5-9:2", "ok:12,any:40_7", "40_7", "A,B\n1,2\n", "{\"A\": 1}\n", "0-0", "%", "_", "9999999-10000000"} {
		f.Add(s)
	}
	named := func(t *testing.T, what string, err error) {
		var e *dspool.Error
		if !errors.As(err, &e) || e.Code != dspool.EInvalid || e.Field == "" {
			t.Fatalf("%s refused with %#v: want an invalid-input error naming its field", what, err)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := dspool.ParseArray("array", s); err != nil {
			named(t, "ParseArray", err)
		} else {
			again, err := dspool.ParseArray("array", a.String())
			if err != nil || !slices.Equal(again.Indices, a.Indices) || again.MaxRunning != a.MaxRunning {
				t.Fatalf("ParseArray(%q) = %v, which reads back as %v, %v", s, a, again, err)
			}
			if len(a.Indices) == 0 || len(a.Indices) > dspool.MaxArrayTasks || !slices.IsSorted(a.Indices) {
				t.Fatalf("ParseArray(%q): %d indices", s, len(a.Indices))
			}
		}
		if ds, err := dspool.ParseAfter("after", s); err != nil {
			named(t, "ParseAfter", err)
		} else if again, err := dspool.ParseAfter("after", dspool.FormatAfter(ds)); err != nil || dspool.FormatAfter(again) != dspool.FormatAfter(ds) {
			t.Fatalf("ParseAfter(%q) reads back as %v, %v", s, again, err)
		}
		if r, err := dspool.ParseTaskRef("id", s); err != nil {
			named(t, "ParseTaskRef", err)
		} else if again, err := dspool.ParseTaskRef("id", r.String()); err != nil || again != r {
			t.Fatalf("ParseTaskRef(%q) = %v, which reads back as %v, %v", s, r, again, err)
		}
		if rows, err := dspool.ParseSweep("sweep", strings.NewReader(s)); err != nil {
			named(t, "ParseSweep", err)
		} else {
			for _, row := range rows {
				for k := range row {
					if dspool.ValidateEnvName(k) != nil {
						t.Fatalf("ParseSweep(%q) accepted the variable %q", s, k)
					}
				}
			}
		}
	})
}

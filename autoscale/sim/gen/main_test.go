package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/dspool/dspool/autoscale/sim"
)

// TestShippedTrace checks that testdata/team-week.csv is what this
// generator writes, so that it can be regenerated.
func TestShippedTrace(t *testing.T) {
	var b bytes.Buffer
	if err := sim.WriteTrace(&b, week(20260601)); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../testdata/team-week.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Error("testdata/team-week.csv differs from what gen writes: go generate ./autoscale/sim")
	}
}

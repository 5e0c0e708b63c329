package store_test

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dspool/dspool"
)

func TestTeams(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	for _, n := range []string{"ann", "bob"} {
		if _, err := db.CreateUser(ctx, n, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.CreateTeam(ctx, "vision"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateTeam(ctx, "vision"); dspool.ErrorCode(err) != dspool.EConflict {
		t.Errorf("creating a team twice: got %v, want conflict", err)
	}
	if _, err := db.CreateTeam(ctx, "Bad Name"); dspool.ErrorCode(err) != dspool.EInvalid {
		t.Errorf("creating a team with a bad name: got %v, want invalid", err)
	}
	if _, err := db.AddTeamMember(ctx, "vision", "bob", false); err != nil {
		t.Fatal(err)
	}
	tm, err := db.AddTeamMember(ctx, "vision", "ann", false)
	if err != nil {
		t.Fatal(err)
	}
	// Adding again changes only whether ann maintains it.
	if tm, err = db.AddTeamMember(ctx, "vision", "ann", true); err != nil {
		t.Fatal(err)
	}
	want := []dspool.TeamMember{{User: "ann", Maintainer: true}, {User: "bob"}}
	if !reflect.DeepEqual(tm.Members, want) {
		t.Errorf("members: got %+v, want %+v", tm.Members, want)
	}
	if _, err := db.AddTeamMember(ctx, "vision", "cy", false); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("adding a user who does not exist: got %v, want not_found", err)
	}
	if _, err := db.AddTeamMember(ctx, "nlp", "ann", false); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("adding to a team that does not exist: got %v, want not_found", err)
	}

	gpus := 8
	mem := dspool.Bytes(512 << 30)
	if tm, err = db.SetTeamLimits(ctx, "vision", dspool.Limits{GPUs: &gpus, Memory: &mem}); err != nil {
		t.Fatal(err)
	}
	if tm.Limits.GPUs == nil || *tm.Limits.GPUs != 8 || tm.Limits.CPUs != nil || tm.Limits.String() != "512GiB memory, 8 gpus" {
		t.Errorf("limits: got %s, want 512GiB memory, 8 gpus", tm.Limits)
	}
	if _, err := db.CreateTeam(ctx, "nlp"); err != nil {
		t.Fatal(err)
	}
	teams, err := db.Teams(ctx)
	if err != nil || len(teams) != 2 || teams[0].Name != "nlp" || len(teams[0].Members) != 0 ||
		teams[1].Name != "vision" || !reflect.DeepEqual(teams[1].Members, want) || teams[1].Limits.String() != "512GiB memory, 8 gpus" {
		t.Fatalf("teams: got %+v %v", teams, err)
	}

	if tm, err = db.RemoveTeamMember(ctx, "vision", "bob"); err != nil || len(tm.Members) != 1 {
		t.Fatalf("remove bob: %+v %v", tm, err)
	}
	if _, err := db.RemoveTeamMember(ctx, "vision", "bob"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("removing a user not in the team: got %v, want not_found", err)
	}

	cpus := dspool.MilliCPU(4000)
	if err := db.SetUserLimits(ctx, "ann", dspool.Limits{CPUs: &cpus}); err != nil {
		t.Fatal(err)
	}
	ul, err := db.UserLimits(ctx)
	if err != nil || len(ul) != 1 || ul["ann"].String() != "4 cpus" {
		t.Fatalf("user limits: got %v %v", ul, err)
	}
	if err := db.SetUserLimits(ctx, "ann", dspool.Limits{}); err != nil {
		t.Fatal(err)
	}
	if ul, _ := db.UserLimits(ctx); len(ul) != 0 {
		t.Errorf("user limits after clearing: got %v, want none", ul)
	}
	if err := db.SetUserLimits(ctx, "cy", dspool.Limits{CPUs: &cpus}); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("limits of a user who does not exist: got %v, want not_found", err)
	}

	// A job keeps the team it runs for, also once the team is gone.
	u, _ := db.User(ctx, "ann")
	spec := dspool.JobSpec{Team: "vision", Command: []string{"true"}}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	j, _, err := db.SubmitJob(ctx, u.ID, &spec)
	if err != nil || j.Team != "vision" {
		t.Fatalf("submit for team vision: %+v %v", j, err)
	}
	if err := db.DeleteTeam(ctx, "vision"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Team(ctx, "vision"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("a deleted team: got %v, want not_found", err)
	}
	if err := db.DeleteTeam(ctx, "vision"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("deleting a team twice: got %v, want not_found", err)
	}
	active, err := db.ActiveJobs(ctx)
	if err != nil || len(active) != 1 || active[0].Team != "vision" || active[0].User != "ann" {
		t.Fatalf("active jobs: %+v %v", active, err)
	}
}

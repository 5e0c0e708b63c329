package server_test

import (
	"context"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

// TestShownTextRefusesHiddenCharacters sends text that other people see with
// a character that changes how it reads (a bidi override turns
// "report\u202efdp.exe" into "reportexe.pdf" on screen) through every route
// that takes such text: each answers 400 naming the field and stores nothing.
func TestShownTextRefusesHiddenCharacters(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	_, ada := user(t, p, "ada", false)
	join, err := p.Admin.JoinToken(ctx, dspool.DefaultPool)
	if err != nil {
		t.Fatal(err)
	}
	const rlo, zwsp = "\u202e", "\u200b"
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"job name", func() error {
			_, err := ada.SubmitJob(ctx, &dspool.JobSpec{Name: "report" + rlo + "fdp.exe", Command: []string{"true"}}, 0)
			return err
		}, "name"},
		{"job workdir", func() error {
			_, err := ada.SubmitJob(ctx, &dspool.JobSpec{Workdir: "runs/" + zwsp, Command: []string{"true"}}, 0)
			return err
		}, "workdir"},
		{"token name", func() error {
			_, err := ada.CreateTokenWith(ctx, api.TokenCreate{Name: "ci" + rlo + "nimda"})
			return err
		}, "name"},
		{"user email", func() error {
			_, err := p.Admin.CreateUser(ctx, api.UserCreate{Name: "eve", Email: "eve" + rlo + "@example.com"})
			return err
		}, "email"},
		{"email set", func() error { return p.Admin.SetUserEmail(ctx, "ada", "ada@exa"+zwsp+"mple.com") }, "email"},
		{"pool label", func() error {
			_, err := p.Admin.ApplyPools(ctx, []*dspool.Pool{{Name: "lab", Provider: dspool.Provider("static"), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30},
				Labels: map[string]string{"zone": "a" + rlo + "b"}}})
			return err
		}, "pools[0].labels.zone"},
		{"node label", func() error {
			_, err := (&api.Client{Server: p.URL}).Register(ctx, api.RegisterRequest{JoinToken: join.Token, Name: "n1",
				Labels: map[string]string{"rack" + zwsp: "1"}})
			return err
		}, "labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			e := asError(err)
			if e == nil || e.Code != dspool.EInvalid || e.Field != tt.field {
				t.Fatalf("got %v, want an invalid-input error naming %s", err, tt.field)
			}
		})
	}
	if jobs, err := ada.Jobs(ctx, api.JobQuery{}); err != nil || len(jobs.Jobs) != 0 {
		t.Errorf("jobs after refused submissions: %v, %v; want none", jobs, err)
	}
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

// Starts is the submit -> running latency of one kind of job: its
// started_at (the agent's clock, this machine's) minus its submitted_at.
type Starts struct {
	Kind    string `json:"kind"`
	Secrets int    `json:"secrets"`
	*Dist
}

// The secrets a job with secrets asks for: two as environment variables,
// one as a file of about the size of a cloud service account's key.
var benchSecrets = []struct {
	name string
	size int // bytes of the value
	use  dspool.SecretUse
}{
	{"bench-env-a", 40, dspool.SecretUse{Secret: "bench-env-a"}},
	{"bench-env-b", 40, dspool.SecretUse{Secret: "bench-env-b"}},
	{"bench-key", 2400, dspool.SecretUse{Secret: "bench-key", File: true}},
}

// benchStarts sets the secrets with `dspool secret set` (the value on
// standard input), checks that a job gets them, then submits `true` runs
// times without secrets and runs times with the three, alternately, one
// after another on the idle node.
func benchStarts(ctx context.Context, up *host.Up, runs int) ([]*Starts, error) {
	var uses []dspool.SecretUse
	for _, s := range benchSecrets {
		if _, err := up.Output(ctx, []byte(value(s.size)), "secret", "set", s.name); err != nil {
			return nil, err
		}
		uses = append(uses, s.use)
	}
	// Untimed: the first job has the agent create the account the jobs
	// run as; the second checks that the secrets arrive where asked.
	check := `test -n "$BENCH_ENV_A" && test -n "$BENCH_ENV_B" && test -s "$DSPOOL_SECRETS_DIR/bench-key"`
	for _, spec := range []*dspool.JobSpec{
		{Command: []string{"true"}},
		{Command: []string{"sh", "-c", check}, Secrets: uses},
	} {
		if _, err := runJob(ctx, up.Client, spec); err != nil {
			return nil, fmt.Errorf("%q: %w", spec.Command, err)
		}
	}
	host.Logf("job starts: %d runs of `true` without secrets and %d with %d, alternately", runs, runs, len(uses))
	plain, secret := []float64{}, []float64{}
	for range runs {
		for _, s := range []struct {
			uses []dspool.SecretUse
			into *[]float64
		}{{nil, &plain}, {uses, &secret}} {
			d, err := runJob(ctx, up.Client, &dspool.JobSpec{Command: []string{"true"}, Secrets: s.uses})
			if err != nil {
				return nil, err
			}
			*s.into = append(*s.into, ms(d))
		}
	}
	out := []*Starts{
		{Kind: "no secret", Dist: newDist(plain)},
		{Kind: "3 secrets (2 env, 1 file)", Secrets: len(uses), Dist: newDist(secret)},
	}
	for _, s := range out {
		host.Logf("job start, %s: p50 %.1f p90 %.1f max %.1f ms", s.Kind, s.P50, s.P90, s.Max)
	}
	return out, nil
}

// runJob submits spec to the default pool, waits for it to succeed and
// returns its started_at minus its submitted_at.
func runJob(ctx context.Context, cl *api.Client, spec *dspool.JobSpec) (time.Duration, error) {
	j, err := cl.SubmitJob(ctx, spec, 0)
	for err == nil && !j.State.Terminal() {
		j, err = cl.WaitJob(ctx, j.ID, time.Minute)
	}
	if err != nil {
		return 0, err
	}
	if j.State != dspool.JobSucceeded || j.StartedAt == nil {
		return 0, fmt.Errorf("job %d ended %s (%s): %s", j.ID, j.State, j.Reason, j.Message)
	}
	return j.StartedAt.Sub(j.SubmittedAt), nil
}

// value is a random printable secret of n bytes.
func value(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)[:n]
}

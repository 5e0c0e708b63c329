package server_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

func TestPoolEvents(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	bob, err := p.DB.CreateUser(ctx, "bob", false)
	if err != nil {
		t.Fatal(err)
	}
	bc := p.ClientFor(bob)
	old := &dspool.PoolEvent{Pool: dspool.DefaultPool, At: time.Now().Add(-2 * time.Hour), Kind: dspool.EventWaiting, Message: "2 jobs wait"}
	if err := p.DB.AddPoolEvent(ctx, old); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"default-1", "default-2"} {
		ev := &dspool.PoolEvent{Pool: dspool.DefaultPool, Kind: dspool.EventScaleOut, Nodes: []string{n}, Message: "added " + n}
		if err := p.DB.AddPoolEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		since time.Duration
		limit int
		want  []string
	}{
		{"all", 0, 0, []string{"2 jobs wait", "added default-1", "added default-2"}},
		{"since", time.Hour, 0, []string{"added default-1", "added default-2"}},
		{"limit", 0, 1, []string{"added default-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Any user may read a pool's events.
			evs, err := bc.PoolEvents(ctx, dspool.DefaultPool, tt.since, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range evs {
				got = append(got, ev.Message)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	if _, err := bc.PoolEvents(ctx, "nope", 0, 0); dspool.ErrorCode(err) != dspool.ENotFound || !strings.Contains(err.Error(), "pool nope not found") {
		t.Errorf("events of an unknown pool: got %v, want not_found naming it", err)
	}
	var out any
	for _, q := range []string{"limit=0", "limit=10001", "limit=x", "since=yesterday", "since=2999-01-01T00:00:00Z"} {
		err := p.Admin.Do(ctx, "GET", "/api/v1/pools/default/events?"+q, nil, &out)
		if dspool.ErrorCode(err) != dspool.EInvalid || !strings.Contains(err.Error(), strings.Split(q, "=")[0]+":") {
			t.Errorf("events?%s: got %v, want invalid naming the parameter", q, err)
		}
	}
}

func TestUsageAuthorization(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 46000})
	ctx := context.Background()
	bob, err := p.DB.CreateUser(ctx, "bob", false)
	if err != nil {
		t.Fatal(err)
	}
	bc := p.ClientFor(bob)
	for _, c := range []struct {
		name string
		cl   *api.Client
	}{{"admin", p.Admin}, {"bob", bc}} {
		j, err := c.cl.SubmitJob(ctx, &dspool.JobSpec{CPUs: 500, Command: []string{"sleep", "0.2"}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if j = p.Wait(p.Admin, j.ID); j.State != dspool.JobSucceeded {
			t.Fatalf("%s's job: %s (%s), want succeeded", c.name, j.State, j.Message)
		}
	}
	admin := "admin46000"

	all, err := p.Admin.Usage(ctx, time.Hour, dspool.UsageByUser)
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Users) != 2 || all.Users[0].User != admin || all.Users[1].User != "bob" {
		t.Fatalf("admin's report by user: got %+v, want rows for %s and bob", all.Users, admin)
	}
	for _, u := range all.Users {
		if u.JobSeconds < 0.1 || u.JobSeconds > 60 || math.Abs(u.CPUSeconds-u.JobSeconds/2) > 1e-6 || u.GPUSeconds != 0 {
			t.Errorf("%s: got %+v, want about 0.2s (under a minute) of job time at half a cpu, no GPU", u.User, u)
		}
	}
	if !all.Until.After(all.Since) || all.Until.Sub(all.Since) != time.Hour || all.By != dspool.UsageByUser || all.Pools != nil {
		t.Errorf("report: %v..%v by %s, pools %v; want an hour up to now, by user", all.Since, all.Until, all.By, all.Pools)
	}

	mine, err := bc.Usage(ctx, 0, dspool.UsageByUser)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine.Users) != 1 || mine.Users[0].User != "bob" || mine.Users[0].JobSeconds != all.Users[1].JobSeconds {
		t.Errorf("bob's report by user: got %+v, want only bob's row %+v", mine.Users, all.Users[1])
	}
	if d := mine.Until.Sub(mine.Since); d != dspool.DefaultUsageWindow {
		t.Errorf("default window: got %s, want %s", d, dspool.DefaultUsageWindow)
	}

	pools, err := bc.Usage(ctx, time.Hour, dspool.UsageByPool)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools.Pools) != 1 || pools.Pools[0].Pool != dspool.DefaultPool || pools.Pools[0].NodeSeconds <= 0 ||
		pools.Pools[0].NodeHours != pools.Pools[0].NodeSeconds/3600 || pools.Pools[0].Cost != 0 {
		t.Errorf("bob's report by pool: got %+v, want the default pool's node time, no cost", pools.Pools)
	}

	var out any
	err = bc.Do(ctx, "GET", "/api/v1/usage?by=team", nil, &out)
	if dspool.ErrorCode(err) != dspool.EInvalid || !strings.Contains(err.Error(), `by: "team" is not a grouping: use user or pool`) {
		t.Errorf("by=team: got %v, want invalid naming by", err)
	}
	err = bc.Do(ctx, "GET", "/api/v1/usage?since=-1h", nil, &out)
	if dspool.ErrorCode(err) != dspool.EInvalid || !strings.HasPrefix(err.Error(), "since:") {
		t.Errorf("since=-1h: got %v, want invalid naming since", err)
	}
}

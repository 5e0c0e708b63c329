package fairshare

import (
	"cmp"
	"slices"
	"time"

	"github.com/dspool/dspool"
)

// Report lays out a standing at now for people and programs (`dspool
// share`): the teams and users with usage or work, by name, with their raw
// shares, targets, usage, factors and decayed seconds; a team's seconds are
// its members'.
func Report(now time.Time, halfLife time.Duration, usage map[Key]Usage, st Standing, sh Shares) dspool.ShareReport {
	rep := dspool.ShareReport{At: now.UTC(), HalfLife: dspool.Duration(halfLife), Teams: []dspool.ShareAccount{}, Users: []dspool.ShareAccount{}}
	teams := map[string]*dspool.ShareAccount{}
	add := func(k Key) {
		u, f := usage[k], st.Users[k]
		_, active := st.Users[k]
		rep.Users = append(rep.Users, dspool.ShareAccount{Name: k.User, Team: k.Team, Active: active, Shares: raw(sh.Users, k.User), Target: f.Target,
			Usage: f.Usage, EffectiveUsage: f.Effective, Factor: f.Factor, CPUSeconds: u.CPUSeconds, GPUSeconds: u.GPUSeconds, GiBSeconds: u.GiBSeconds})
		if k.Team == "" {
			return
		}
		t := teams[k.Team]
		if t == nil {
			tf, active := st.Teams[k.Team]
			t = &dspool.ShareAccount{Name: k.Team, Active: active, Shares: raw(sh.Teams, k.Team), Target: tf.Target, Usage: tf.Usage,
				EffectiveUsage: tf.Effective, Factor: tf.Factor}
			teams[k.Team] = t
		}
		t.CPUSeconds += u.CPUSeconds
		t.GPUSeconds += u.GPUSeconds
		t.GiBSeconds += u.GiBSeconds
	}
	for k := range usage {
		add(k)
	}
	for k := range st.Users {
		if _, done := usage[k]; !done {
			add(k)
		}
	}
	for _, t := range teams {
		rep.Teams = append(rep.Teams, *t)
	}
	byName := func(a, b dspool.ShareAccount) int {
		return cmp.Or(cmp.Compare(a.Team, b.Team), cmp.Compare(a.Name, b.Name))
	}
	slices.SortFunc(rep.Teams, byName)
	slices.SortFunc(rep.Users, byName)
	return rep
}

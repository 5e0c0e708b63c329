package fairshare

import (
	"cmp"
	"math"
	"slices"
)

// Shares are raw shares by team and by user; one not listed has 1.
type Shares struct {
	Teams map[string]float64
	Users map[string]float64
}

func raw(m map[string]float64, name string) float64 {
	if v, ok := m[name]; ok && v >= 0 {
		return v
	}
	return 1
}

// Factor is one account's standing: its target share of the pool, its
// usage as a fraction of all usage, its effective usage and its factor.
type Factor struct {
	Target    float64 `json:"target"`
	Usage     float64 `json:"usage"`
	Effective float64 `json:"effective_usage"`
	Factor    float64 `json:"factor"`
}

// Standing is the factors of the accounts with work and of their teams.
type Standing struct {
	Users map[Key]Factor
	Teams map[string]Factor // by team; users without a team are not here
}

// group is a top-level account: a team, or a user who runs work for none.
type group struct {
	team, user string
}

func groupOf(k Key) group {
	if k.Team != "" {
		return group{team: k.Team}
	}
	return group{user: k.User}
}

// Factors works out the standing of the accounts in active (those with
// work), from every account's decayed usage.
func Factors(active []Key, usage map[Key]Usage, shares Shares, b Billing) Standing {
	st := Standing{Users: make(map[Key]Factor, len(active)), Teams: map[string]Factor{}}
	total := 0.0
	byGroup := map[group]float64{}
	for k, u := range usage {
		v := u.Billed(b)
		total += v
		byGroup[groupOf(k)] += v
	}
	frac := func(v float64) float64 {
		if total <= 0 {
			return 0
		}
		return v / total
	}
	// Raw shares of the active groups, and of the active users in each.
	// One key per account (active has one per job), in a fixed order.
	seen := make(map[Key]bool, 64)
	var keys []Key
	for _, k := range active {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b Key) int { return cmp.Or(cmp.Compare(a.Team, b.Team), cmp.Compare(a.User, b.User)) })
	groupShare := map[group]float64{}
	members := map[group]float64{}
	sum := 0.0
	for _, k := range keys {
		g := groupOf(k)
		if _, seen := groupShare[g]; !seen {
			if g.team != "" {
				groupShare[g] = raw(shares.Teams, g.team)
			} else {
				groupShare[g] = raw(shares.Users, g.user)
			}
			sum += groupShare[g]
		}
		if g.team != "" {
			members[g] += raw(shares.Users, k.User)
		}
	}
	for _, k := range keys {
		g := groupOf(k)
		gf := Factor{Usage: frac(byGroup[g])}
		if sum > 0 {
			gf.Target = groupShare[g] / sum
		}
		gf.Effective = gf.Usage
		gf.Factor = factor(gf.Effective, gf.Target)
		f := Factor{Usage: frac(usage[k].Billed(b))}
		if g.team == "" {
			f.Target, f.Effective, f.Factor = gf.Target, gf.Effective, gf.Factor
		} else {
			st.Teams[g.team] = gf
			part := 0.0
			if members[g] > 0 {
				part = raw(shares.Users, k.User) / members[g]
			}
			f.Target = gf.Target * part
			f.Effective = f.Usage + (gf.Effective-f.Usage)*part
			f.Factor = factor(f.Effective, f.Target)
		}
		st.Users[k] = f
	}
	return st
}

// factor is 2^(-effective/target), 0 for no share.
func factor(effective, target float64) float64 {
	if target <= 0 {
		return 0
	}
	return math.Exp2(-effective / target)
}

package server

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/scheduler"
)

// One identity across machines: the accounts agents report (heartbeat.go)
// keep new users off the uids they hold (store.CreateUser), and what is
// left to warn of is said here.

// userWarnings says what may stop u's work on some node, and which uids u
// did not get because accounts on nodes hold them.
func (s *Server) userWarnings(ctx context.Context, u *dspool.User) ([]string, error) {
	nodes, err := s.db.Nodes(ctx, "", false)
	if err != nil {
		return nil, err
	}
	users, err := s.db.Users(ctx)
	if err != nil {
		return nil, err
	}
	base, err := s.db.UIDBase(ctx)
	if err != nil {
		return nil, err
	}
	prev := base - 1 // the highest uid below u's that a user has
	for _, o := range users {
		if o.Name != u.Name && o.UID < u.UID {
			prev = max(prev, o.UID)
		}
	}
	var out []string
	for _, c := range groupByAccount(dspool.NameClashes(u, nodes)) {
		out = append(out, fmt.Sprintf("%s exists on %s with an id other than user %s's %d: their work does not run there until it is removed (userdel %s; groupdel for a group)",
			c.account, c.nodes, u.Name, u.UID, c.account.Name))
	}
	for _, c := range groupByAccount(dspool.Clashes(u, nodes)) {
		out = append(out, fmt.Sprintf("%s on %s holds user %s's id %d: their work does not run there until it is removed or renumbered",
			c.account, c.nodes, u.Name, c.account.ID))
	}
	var skipped []dspool.Clash
	for _, n := range nodes {
		for _, a := range dspool.Foreign(n.Accounts, users) {
			if a.ID > prev && a.ID < u.UID {
				skipped = append(skipped, dspool.Clash{Node: n.Name, Account: a})
			}
		}
	}
	for _, c := range groupByAccount(skipped) {
		out = append(out, fmt.Sprintf("uid %d was not given: %s holds it on %s", c.account.ID, c.account, c.nodes))
	}
	return out, nil
}

type accountNodes struct {
	account dspool.HostAccount
	nodes   string // "node a, b"
}

// groupByAccount lists each account once, with the nodes it is on.
func groupByAccount(cs []dspool.Clash) []accountNodes {
	on := map[dspool.HostAccount][]string{}
	var accts []dspool.HostAccount
	for _, c := range cs {
		if on[c.Account] == nil {
			accts = append(accts, c.Account)
		}
		on[c.Account] = append(on[c.Account], c.Node)
	}
	dspool.SortAccounts(accts)
	out := make([]accountNodes, len(accts))
	for i, a := range accts {
		names := on[a]
		sort.Strings(names)
		word := "node "
		if len(names) > 1 {
			word = "nodes "
		}
		out[i] = accountNodes{account: a, nodes: word + strings.Join(names, ", ")}
	}
	return out
}

// dropOwnAccounts removes from nodes' accounts those that have become a
// user's own since their agent reported them: a new user who was given the
// uid of an account of their name.
func (s *Server) dropOwnAccounts(ctx context.Context, nodes []*dspool.Node) error {
	var users []*dspool.User
	for _, n := range nodes {
		if len(n.Accounts) == 0 {
			continue
		}
		if users == nil {
			var err error
			if users, err = s.db.Users(ctx); err != nil {
				return err
			}
		}
		n.Accounts = dspool.Foreign(n.Accounts, users)
	}
	return nil
}

// closeNodes closes each node to the users whose uid or gid an account
// there holds, and returns why, by user and pool ("ann\x00gpu"): the first
// clash, and on how many nodes of the pool there are others.
func (s *Server) closeNodes(ctx context.Context, nodes []scheduler.Node) (map[string]string, error) {
	ready := s.hub.ready()
	some := false
	for _, n := range nodes {
		some = some || ready[n.ID].accounts
	}
	if !some {
		return nil, nil
	}
	stored, err := s.db.Nodes(ctx, "", false)
	if err != nil {
		return nil, err
	}
	users, err := s.db.Users(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]*dspool.Node{}
	for _, n := range stored {
		byID[n.ID] = n
	}
	first := map[string]string{}
	count := map[string]int{}
	for i := range nodes {
		n := byID[nodes[i].ID]
		if n == nil || len(n.Accounts) == 0 {
			continue
		}
		for _, u := range users {
			cs := dspool.Clashes(u, []*dspool.Node{n})
			if len(cs) == 0 {
				continue
			}
			if nodes[i].Closed == nil {
				nodes[i].Closed = map[string]bool{}
			}
			nodes[i].Closed[u.Name] = true
			key := u.Name + "\x00" + nodes[i].Pool
			if count[key] == 0 {
				first[key] = cs[0].Explain(u)
			}
			count[key]++
		}
	}
	for key, n := range count {
		if n > 1 {
			first[key] += fmt.Sprintf(" (and on %d more of the pool's nodes)", n-1)
		}
	}
	return first, nil
}

// closedWaits says why queued jobs did not go to nodes closed to their
// users, as of the last scheduling pass.
type closedWaits struct {
	mu    sync.Mutex
	byJob map[int64]string
}

// set records, for each job of jobs that plan left queued, why the nodes
// closed to its user were (by user and pool, as closeNodes returns).
func (c *closedWaits) set(jobs []scheduler.Job, plan []scheduler.Placement, why map[string]string) {
	placed := make(map[int64]bool, len(plan))
	for _, p := range plan {
		placed[p.Job] = true
	}
	m := map[int64]string{}
	for _, j := range jobs {
		if w := why[j.User+"\x00"+j.Pool]; w != "" && !placed[j.ID] {
			m[j.ID] = w
		}
	}
	c.mu.Lock()
	c.byJob = m
	c.mu.Unlock()
}

func (c *closedWaits) why(job int64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byJob[job]
}

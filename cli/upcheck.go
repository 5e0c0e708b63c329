package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os/user"
	"strconv"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/store"
)

// What `dspool up` checks of this machine at start: that the accounts on
// it leave the store's uid range to the store's users, and that its local
// pools do not advertise more than the machine has.

// hostAccounts returns this machine's accounts and groups in the store's
// uid range: the local agents will report them, but the first admin of a
// new store is made before they join, so it must avoid them itself.
func hostAccounts(ctx context.Context, db *store.DB) ([]dspool.HostAccount, error) {
	r, err := db.UIDRange(ctx)
	if err != nil {
		return nil, err
	}
	return agent.HostAccounts("", r)
}

// warnHostClashes says which accounts on this machine hold uids of the
// store's range that are not its users' own, and suggests a --uid-base
// that is free here for a new store.
func warnHostClashes(ctx context.Context, db *store.DB, log *slog.Logger) {
	users, err := db.Users(ctx)
	if err != nil {
		return
	}
	r, err := db.UIDRange(ctx)
	if err != nil {
		return
	}
	host, err := agent.HostAccounts("", r)
	if err != nil {
		return
	}
	foreign := dspool.Foreign(host, users)
	if len(foreign) == 0 {
		return
	}
	all, _ := agent.HostAccounts("", dspool.UIDRange{From: 1000, To: 1<<31 - 1})
	log.Warn(fmt.Sprintf("accounts on this machine hold uids of this store's range (%d-%d): new users skip them, but another dspool store on this machine (its users are these accounts, most often) and this one "+
		"should each have a uid range of their own: give a new store one that is free here, e.g. --uid-base %d", r.From, r.To, freeUIDBase(all, len(users))),
		"accounts", dspool.ListAccounts(foreign))
}

// freeUIDBase is a uid base, a multiple of 10000 from 20000, whose range
// for users more users holds no account of accts.
func freeUIDBase(accts []dspool.HostAccount, users int) int {
	for base := 20000; ; base += 10000 {
		r := dspool.NewUIDRange(base, base+users)
		free := !r.Contains(65534) // nobody, nogroup
		for _, a := range accts {
			free = free && !r.Contains(a.ID)
		}
		if free {
			return base
		}
	}
}

// warnAccountClashes says which dspool users have an account on this
// machine with another uid: local agents cannot run their work until it is
// removed (a leftover from an earlier store, most often).
func warnAccountClashes(ctx context.Context, db *store.DB, log *slog.Logger) {
	users, err := db.Users(ctx)
	if err != nil {
		return
	}
	for _, u := range users {
		acct, err := user.Lookup(u.Name)
		if err != nil || acct.Uid == strconv.Itoa(u.UID) {
			continue
		}
		log.Warn("an account with this user's name has another uid on this machine: their jobs and sessions cannot run here until it is removed (userdel), or the store is made anew with a --uid-base that matches (for the first admin: or with --admin NAME, a name no account has)",
			"user", u.Name, "dspool_uid", u.UID, "account_uid", acct.Uid)
	}
}

// machine is what this machine has for local pools.
type machine struct {
	cpus dspool.MilliCPU
	mem  dspool.Bytes
}

func thisMachine() machine { return machine{cpus: agent.NumCPU(), mem: agent.MemTotal()} }

// share is the node size `dspool up` gives each of n local nodes: an equal
// part of the machine, at least one cpu.
func (m machine) share(n int) dspool.NodeSize {
	n = max(n, 1)
	return dspool.NodeSize{CPUs: max(m.cpus/dspool.MilliCPU(n), 1000), Memory: m.mem / dspool.Bytes(n)}
}

// upSized reports whether s is a size `dspool up` gives (the share of some
// count of nodes), not one an admin set with `dspool pool apply`.
func (m machine) upSized(s dspool.NodeSize) bool {
	for n := 1; n <= maxUpNodes; n++ {
		if s == m.share(n) {
			return true
		}
	}
	return false
}

// maxUpNodes bounds --nodes.
const maxUpNodes = 256

// oversized says how the local pools advertise more than the machine has
// (each counted at its count, or its autoscale max), or "".
func (m machine) oversized(pools []*dspool.Pool) string {
	var cpus dspool.MilliCPU
	var mem dspool.Bytes
	var names []string
	for _, p := range pools {
		if p.Provider.Name != dspool.ProviderLocal {
			continue
		}
		n := p.Count
		if p.Autoscale != nil {
			n = max(n, p.Autoscale.Max)
		}
		if n == 0 {
			continue
		}
		cpus += p.Node.CPUs * dspool.MilliCPU(n)
		mem += p.Node.Memory * dspool.Bytes(n)
		names = append(names, fmt.Sprintf("%s (%d x %s cpus, %s)", p.Name, n, p.Node.CPUs, p.Node.Memory))
	}
	if cpus <= m.cpus && mem <= m.mem {
		return ""
	}
	return fmt.Sprintf("the local pools %v advertise %s cpus and %s, more than this machine's %s cpus and %s: jobs placed on them will compete for cpus or run out of memory; "+
		"give fewer --nodes, or a smaller node size with `dspool pool apply`", names, cpus, mem, m.cpus, m.mem)
}

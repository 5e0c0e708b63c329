package dspool

import (
	"fmt"
	"slices"
	"strings"
)

// A user's uid (and gid, the same number) must be free for them on every
// node: an agent creates the user's account with it, and refuses to run
// their work where another account or group holds it. Agents report the
// accounts and groups of their machine whose ids lie in the store's uid
// range, so the server can see such clashes before work fails on them.

// UIDMargin is how far past its highest uid a store's uid range reaches:
// the uids its next users will get.
const UIDMargin = 1000

// MaxHostAccounts bounds the accounts one node reports.
const MaxHostAccounts = 4096

// HostAccount is an account (or, with Group, a group) on a machine whose id
// lies in dspool's uid range.
type HostAccount struct {
	Name  string `json:"name"`
	ID    int    `json:"id"`
	Group bool   `json:"group,omitempty"`
}

func (a HostAccount) String() string {
	if a.Group {
		return fmt.Sprintf("group %s (gid %d)", a.Name, a.ID)
	}
	return fmt.Sprintf("account %s (uid %d)", a.Name, a.ID)
}

// UIDRange is the ids a store gives or will give its users: from its uid
// base to UIDMargin past its highest uid.
type UIDRange struct {
	From int `json:"from"`
	To   int `json:"to"` // inclusive
}

// NewUIDRange is the range of a store with this uid base whose highest uid
// is top (below base when it has no user).
func NewUIDRange(base, top int) UIDRange {
	return UIDRange{From: base, To: max(top, base) + UIDMargin}
}

// Contains reports whether id lies in r.
func (r UIDRange) Contains(id int) bool { return id >= r.From && id <= r.To }

// Takes reports whether a keeps the id from the user called name: it has
// that id and is not the user's own account or group.
func (a HostAccount) Takes(name string, id int) bool {
	return a.ID == id && a.Name != name
}

// Foreign returns the accounts that are not the users' own: those whose
// name and id do not both match one of them.
func Foreign(accts []HostAccount, users []*User) []HostAccount {
	own := make(map[HostAccount]bool, 2*len(users))
	for _, u := range users {
		own[HostAccount{Name: u.Name, ID: u.UID}] = true
		own[HostAccount{Name: u.Name, ID: u.GID, Group: true}] = true
	}
	var out []HostAccount
	for _, a := range accts {
		if !own[a] {
			out = append(out, a)
		}
	}
	return out
}

// Clash is what stops a user's work on one node: an account or group there
// that holds the user's uid or gid.
type Clash struct {
	Node    string      `json:"node"`
	Account HostAccount `json:"account"`
}

// Clashes returns the accounts of nodes that hold u's uid or gid.
func Clashes(u *User, nodes []*Node) []Clash {
	var out []Clash
	for _, n := range nodes {
		for _, a := range n.Accounts {
			if a.Takes(u.Name, u.UID) || a.Takes(u.Name, u.GID) {
				out = append(out, Clash{Node: n.Name, Account: a})
			}
		}
	}
	return out
}

// Explain says what a clash means for u and what to do about it.
func (c Clash) Explain(u *User) string {
	what, kind, del := "uid", "account", "userdel"
	if c.Account.Group {
		what, kind, del = "gid", "group", "groupdel"
	}
	return fmt.Sprintf("%s %d of user %s is taken on node %s by %s: their work does not run there until that %s is removed or renumbered on the node (%s %s)",
		what, c.Account.ID, u.Name, c.Node, c.Account, kind, del, c.Account.Name)
}

// NameClashes returns the accounts of nodes called u.Name with an id other
// than u's: an agent there cannot give u their uid.
func NameClashes(u *User, nodes []*Node) []Clash {
	var out []Clash
	for _, n := range nodes {
		for _, a := range n.Accounts {
			if a.Name == u.Name && (!a.Group && a.ID != u.UID || a.Group && a.ID != u.GID) {
				out = append(out, Clash{Node: n.Name, Account: a})
			}
		}
	}
	return out
}

// ListAccounts names accounts for a message: "account bob (uid 20001), group
// lab (gid 20002)", the first few and how many more.
func ListAccounts(accts []HostAccount) string {
	const show = 5
	var parts []string
	for i, a := range accts {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(accts)-show))
			break
		}
		parts = append(parts, a.String())
	}
	return strings.Join(parts, ", ")
}

// SortAccounts orders accounts by id, accounts before groups, then name.
func SortAccounts(accts []HostAccount) {
	slices.SortFunc(accts, func(a, b HostAccount) int {
		if a.ID != b.ID {
			return a.ID - b.ID
		}
		if a.Group != b.Group {
			if a.Group {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// FreeUID is the uid (and gid) a new user called name gets: the id of an
// account of that name in accts that is free (one left by an earlier store
// on a machine, reused so it fits), else the first free id from next. An
// id is free when used says no user has it and no account or group in
// accts of another name holds it.
func FreeUID(name string, next int, accts []HostAccount, used func(id int) bool) int {
	held := map[int]bool{}
	for _, a := range accts {
		if a.Name != name {
			held[a.ID] = true
		}
	}
	free := func(id int) bool { return !held[id] && !used(id) }
	for _, a := range accts {
		if a.Name == name && !a.Group && free(a.ID) {
			return a.ID
		}
	}
	id := next
	for !free(id) {
		id++
	}
	return id
}

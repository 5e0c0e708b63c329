package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/share"
)

// accounts creates the local account of each user, with the uid/gid the
// server gave it, before anything runs as that user on this node.
type accounts struct {
	mu   sync.Mutex
	done map[string]bool
}

func (a *accounts) ensure(u api.RunAs, home string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done[u.Name] {
		return nil
	}
	var err error
	// Agents sharing a host race to create the same account: useradd and
	// groupadd then fail (lock busy, uid or group already taken). Each try
	// starts by looking the account up again, so losing the race is fine;
	// a real mismatch is reported by that lookup and not retried.
	for i := 0; i < 20; i++ {
		err = a.ensureOnce(u, home)
		if err == nil {
			a.done[u.Name] = true
			return nil
		}
		if _, mismatch := err.(*mismatchError); mismatch {
			return err
		}
		time.Sleep(time.Duration(10*(i+1)) * time.Millisecond)
	}
	return err
}

// mismatchError is an account that exists with other ids than dspool's.
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }

func (a *accounts) ensureOnce(u api.RunAs, home string) error {
	uid, gid := strconv.Itoa(u.UID), strconv.Itoa(u.GID)
	if byID, err := user.LookupId(uid); err == nil {
		if byID.Username != u.Name {
			return &mismatchError{fmt.Sprintf("uid %d belongs to account %q on this node, but dspool gives it to user %q: remove or renumber that account on this node, or use a dspool store whose --uid-base range is free here", u.UID, byID.Username, u.Name)}
		}
		return nil
	}
	if byName, err := user.Lookup(u.Name); err == nil {
		if byName.Uid == uid {
			// Another agent of this host made it between the two lookups.
			return nil
		}
		return &mismatchError{fmt.Sprintf("account %q exists on this node with uid %s, but dspool gives it uid %d, and a user's uid must be the same on every node: if it is left from an earlier dspool, remove it (userdel %s); otherwise give the dspool user another name", u.Name, byName.Uid, u.UID, u.Name)}
	}
	if g, err := user.LookupGroupId(gid); err != nil {
		if out, err := exec.Command("groupadd", "-g", gid, u.Name).CombinedOutput(); err != nil {
			return fmt.Errorf("groupadd %s: %v: %s", u.Name, err, strings.TrimSpace(string(out)))
		}
	} else if g.Name != u.Name {
		return &mismatchError{fmt.Sprintf("gid %d belongs to group %q on this node, not %q", u.GID, g.Name, u.Name)}
	}
	out, err := exec.Command("useradd", "-u", uid, "-g", gid, "-M", "-N", "-d", home, "-s", "/bin/bash", u.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %v: %s", u.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// owner is whom the agent acts as on the share for u's work: u when the
// agent runs as root (the work runs as u), else the agent itself.
func (ag *Agent) owner(u api.RunAs) share.Owner {
	if ag.root && u.UID != 0 {
		return share.Owner{UID: u.UID, GID: u.GID}
	}
	return share.Self()
}

// userDir makes a user's directory on the share (home/ann, jobs/7) when
// missing. Where the share squashes root, only the control plane can: the
// error says so.
func (ag *Agent) userDir(rel string, o share.Owner, perm os.FileMode) error {
	err := share.UserDir(ag.cfg.Share, rel, o, perm)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: root on this node may not make %s (the share squashes root, as NFS's root_squash does); "+
			"the control plane makes users' directories before it sends work, so it must see the same share with root's rights", err, rel)
	}
	return err
}

package agent

import (
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool/api"
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
	// useradd takes a lock on /etc/passwd: agents sharing a host retry.
	for i := 0; i < 20; i++ {
		if err = a.ensureOnce(u, home); err == nil {
			a.done[u.Name] = true
			return nil
		}
		if !strings.Contains(err.Error(), "lock") && !strings.Contains(err.Error(), "exit status 10") && !strings.Contains(err.Error(), "exit status 1:") {
			return err
		}
		time.Sleep(time.Duration(20*(i+1)) * time.Millisecond)
	}
	return err
}

func (a *accounts) ensureOnce(u api.RunAs, home string) error {
	uid, gid := strconv.Itoa(u.UID), strconv.Itoa(u.GID)
	if byID, err := user.LookupId(uid); err == nil {
		if byID.Username != u.Name {
			return fmt.Errorf("uid %d belongs to %q on this node, not %q: free that uid or change dspool's uid base", u.UID, byID.Username, u.Name)
		}
		return nil
	}
	if byName, err := user.Lookup(u.Name); err == nil {
		return fmt.Errorf("account %q exists on this node with uid %s, but dspool gives it uid %d: the uids must match on every node", u.Name, byName.Uid, u.UID)
	}
	if g, err := user.LookupGroupId(gid); err != nil {
		if out, err := exec.Command("groupadd", "-g", gid, u.Name).CombinedOutput(); err != nil {
			return fmt.Errorf("groupadd %s: %v: %s", u.Name, err, strings.TrimSpace(string(out)))
		}
	} else if g.Name != u.Name {
		return fmt.Errorf("gid %d belongs to group %q on this node, not %q", u.GID, g.Name, u.Name)
	}
	out, err := exec.Command("useradd", "-u", uid, "-g", gid, "-M", "-N", "-d", home, "-s", "/bin/bash", u.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %v: %s", u.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

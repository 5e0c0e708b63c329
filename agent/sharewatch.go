package agent

import (
	"fmt"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"golang.org/x/sys/unix"
)

// shareHangAfter is how long a look at the share may take before the node
// says its share does not answer.
const shareHangAfter = 5 * time.Second

// shareWatch looks at the share off the heartbeat's path. A network share
// whose server is gone (a hard NFS mount, an sshfs whose link is cut)
// blocks every call on it, for minutes or for ever; a heartbeat that waited
// on one would make the node look lost while its work runs on, and hold
// the agent's lock. One look runs at a time, in its own goroutine; the
// heartbeat reads the last one's result, and a look that has not come back
// in shareHangAfter is itself the news: the node takes no new work until
// the share answers again.
type shareWatch struct {
	look func() (dspool.Usage, string) // the share's figures, and what is wrong ("" if nothing)
	now  func() time.Time

	mu      sync.Mutex
	since   time.Time // when the look in flight began; zero when none
	usage   dspool.Usage
	trouble string
	at      time.Time // when the last look came back
}

// state returns the share's figures and trouble as last seen, starting a
// new look when the last is older than every.
func (w *shareWatch) state(every time.Duration) (dspool.Usage, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if !w.since.IsZero() {
		if d := now.Sub(w.since); d >= shareHangAfter {
			return w.usage, fmt.Sprintf("the share has not answered for %s (a network mount whose server or link is down?): "+
				"the node takes no new work until it answers", d.Round(time.Second))
		}
		return w.usage, w.trouble
	}
	if w.at.IsZero() || now.Sub(w.at) >= every {
		w.since = now
		done := make(chan struct{})
		go func() {
			u, why := w.look()
			w.mu.Lock()
			w.usage, w.trouble, w.at, w.since = u, why, w.now(), time.Time{}
			w.mu.Unlock()
			close(done)
		}()
		if w.at.IsZero() {
			// The first look is waited for (briefly): a node reports its
			// share's figures from its first heartbeat.
			w.mu.Unlock()
			select {
			case <-done:
			case <-time.After(time.Second):
			}
			w.mu.Lock()
		}
	}
	return w.usage, w.trouble
}

// lookAtShare is the agent's look: the share's size and files, and whether
// it is still the share the node joined with.
func (ag *Agent) lookAtShare() (dspool.Usage, string) {
	var u dspool.Usage
	var st unix.Statfs_t
	if ag.cfg.Share == "" {
		return u, ""
	}
	if err := unix.Statfs(ag.cfg.Share, &st); err == nil {
		u.ShareSize = dspool.Bytes(st.Blocks) * dspool.Bytes(st.Bsize)
		u.ShareFree = dspool.Bytes(st.Bavail) * dspool.Bytes(st.Bsize)
		u.ShareFiles, u.ShareFilesFree = int64(st.Files), int64(st.Ffree)
	}
	return u, ag.shareTrouble()
}

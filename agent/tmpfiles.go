package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dspool/dspool/share"
	"golang.org/x/sys/unix"
)

// tempDirs are the machine's directories every user may write, whose files
// a user's work leaves behind: /dev/shm's are memory nobody would free.
var tempDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// workEnded is called when an attempt or a session of u ends. Once no
// process of u is left on the machine (the work of every agent on it
// counts), the files u made in tempDirs before now go, removed as u without
// following links: the next user of the machine finds its memory and
// temporary space free, and nothing of u's to read.
func (ag *Agent) workEnded(uid, gid int) {
	if !ag.root || uid <= 0 {
		return
	}
	before := time.Now()
	go func() {
		if processOf(uid) {
			return
		}
		n := removeTempFiles(uid, gid, before, tempDirs)
		if n > 0 {
			ag.log.Info("removed what a user left in temporary directories", "uid", uid, "entries", n)
		}
	}()
}

// processOf says whether any process on the machine runs as uid.
func processOf(uid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true // unknown: keep the files
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name(), &st) == nil && int(st.Uid) == uid {
			return true
		}
	}
	return false
}

// removeTempFiles removes, as uid, the entries of dirs that uid owns and
// that changed last before t (work that started since keeps its files),
// and returns how many went.
func removeTempFiles(uid, gid int, t time.Time, dirs []string) int {
	n := 0
	_ = share.As(uid, gid, func() error {
		for _, dir := range dirs {
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, e := range entries {
				p := filepath.Join(dir, e.Name())
				var st unix.Stat_t
				if unix.Lstat(p, &st) != nil || int(st.Uid) != uid ||
					time.Unix(st.Ctim.Unix()).After(t) {
					continue
				}
				// RemoveAll opens directories without following links.
				if os.RemoveAll(p) == nil {
					n++
				}
			}
		}
		return nil
	})
	return n
}

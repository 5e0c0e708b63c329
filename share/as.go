package share

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// As runs fn with the file-system identity of uid:gid (gid its only group),
// so that the kernel checks every path fn opens, creates, links or removes
// as that user's, and what fn creates is theirs: root acts on a user's
// files only with the user's rights. fn runs on an OS thread of its own
// whose file-system ids are changed (setfsuid, setfsgid and setgroups are
// per thread); the thread goes back to the runtime only once restored, and
// is ended otherwise. fn must not start goroutines that touch files on its
// behalf: they run on other threads, as the process.
//
// With uid < 0, or in a process that is not root (it cannot act as anyone
// else, and its users are itself), fn runs as the process.
func As(uid, gid int, fn func() error) error {
	if uid < 0 || os.Geteuid() != 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		groups, err := unix.Getgroups()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("act as uid %d: read groups: %w", uid, err)
			return
		}
		if err := become(uid, gid, []int{gid}); err != nil {
			if become(0, 0, groups) == nil {
				runtime.UnlockOSThread()
			}
			errc <- fmt.Errorf("act as uid %d: %w", uid, err)
			return
		}
		err = fn()
		if rerr := become(0, 0, groups); rerr == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// become sets the calling thread's file-system ids and groups, and checks
// that they took (setfsuid reports no error).
func become(uid, gid int, groups []int) error {
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	unix.Setfsgid(gid)
	unix.Setfsuid(uid)
	// An invalid id (-1) changes nothing and returns the current one.
	if cur, _ := unix.SetfsgidRetGid(-1); cur != gid {
		return fmt.Errorf("setfsgid %d: still %d", gid, cur)
	}
	if cur, _ := unix.SetfsuidRetUid(-1); cur != uid {
		return fmt.Errorf("setfsuid %d: still %d", uid, cur)
	}
	return nil
}

package agentlock

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHandedLock: a lock taken by TryLock and handed over stays held by
// whoever has it, so TryLock and a second agent are refused, and the agent
// given it records itself; once every holder has closed it, it is free.
func TestHandedLock(t *testing.T) {
	dir := t.TempDir()
	lock, err := TryLock(dir)
	if err != nil || lock == nil {
		t.Fatalf("TryLock on a free directory: %v, %v", lock, err)
	}
	// What the child inherits: another descriptor of the same open file.
	fd, err := unix.Dup(int(lock.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	lock.Close() // the starter's copy goes; the agent's holds the lock
	if again, err := TryLock(dir); again != nil || err != nil {
		t.Fatalf("TryLock while an agent starts: %v, %v; want neither", again, err)
	}
	t.Setenv(fdVar, itoa(fd))
	handed, err := Inherited()
	if err != nil || handed == nil {
		t.Fatalf("Inherited: %v, %v", handed, err)
	}
	if _, ok := os.LookupEnv(fdVar); ok {
		t.Errorf("%s is still in the environment", fdVar)
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("the lock handed over is not closed on exec (flags %#x, %v): the agent's jobs would hold it", flags, err)
	}
	held, err := Take(dir, handed)
	if err != nil {
		t.Fatalf("Take with the lock handed over: %v", err)
	}
	rec, err := Read(dir)
	if err != nil || rec.PID != os.Getpid() || rec.Boot == "" || rec.Start == 0 {
		t.Fatalf("the agent's record: %+v, %v", rec, err)
	}
	if _, err := Take(dir, nil); err == nil || !strings.Contains(err.Error(), "pid "+itoa(os.Getpid())) {
		t.Fatalf("a second agent on a held directory: %v; want refused, naming the holder", err)
	}
	held.Close()
	free, err := TryLock(dir)
	if err != nil || free == nil {
		t.Fatalf("TryLock once the agent has gone: %v, %v", free, err)
	}
	free.Close()
}

// TestHandedLockOfAnotherDirectory: a descriptor that is not the
// directory's lock is refused, and the directory is not taken with it.
func TestHandedLockOfAnotherDirectory(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	lock, err := TryLock(other)
	if err != nil || lock == nil {
		t.Fatal(lock, err)
	}
	if _, err := Take(dir, lock); err == nil {
		t.Fatal("the lock of another directory was taken for this one")
	}
	if _, err := os.Stat(filepath.Join(dir, RecordName)); !os.IsNotExist(err) {
		t.Errorf("a record after a refused lock: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

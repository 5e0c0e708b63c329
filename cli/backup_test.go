package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/store"
)

func TestBackupAndRestore(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	if _, err := p.Admin.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}}, 0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(file, []byte("an older backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, p, p.Admin, "backup", file)
	if code != 0 || !strings.Contains(out, "backed up the store of "+p.URL+" to "+file+": ") || !strings.Contains(out, "1 user, 1 job, 0 secrets") ||
		!strings.Contains(errs, "secrets.key") {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errs)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup: %v %v; want mode 0600", fi, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".backup.db.tmp-*")); len(left) != 0 {
		t.Errorf("left beside the backup: %v", left)
	}

	user, err := p.DB.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, p, p.ClientFor(user), "backup", file+"2"); code == 0 || !strings.Contains(errs, "admin") {
		t.Errorf("backup as a user: exit %d, %q; want a refusal", code, errs)
	}
	if _, err := os.Stat(file + "2"); err == nil {
		t.Error("a refused backup left its file")
	}

	data := filepath.Join(dir, "restored")
	out, errs, code = run(t, p, p.Admin, "restore", file, "--data", data)
	if code != 0 || !strings.Contains(out, "restored "+file+" into "+filepath.Join(data, "dspool.db")+": 1 user, 1 job, 0 secrets") ||
		!strings.Contains(out, "tls/") || !strings.Contains(out, "then: dspool up --data "+data) {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errs)
	}
	if _, err := store.CheckBackup(ctx, filepath.Join(data, "dspool.db")); err != nil {
		t.Error(err)
	}
	_, errs, code = run(t, p, p.Admin, "restore", file, "--data", data)
	if code == 0 || !strings.Contains(errs, filepath.Join(data, "dspool.db")+" exists: restore into a new data directory") {
		t.Errorf("restore over a store: exit %d, %q; want a refusal naming it", code, errs)
	}
	if _, errs, code := run(t, p, p.Admin, "restore", file); code == 0 || !strings.Contains(errs, "--data") {
		t.Errorf("restore without --data: exit %d, %q", code, errs)
	}
	notes := filepath.Join(dir, "notes.txt")
	_ = os.WriteFile(notes, []byte("hello"), 0o600)
	if _, errs, code := run(t, p, p.Admin, "restore", notes, "--data", filepath.Join(dir, "other")); code == 0 || !strings.Contains(errs, notes+" is not a dspool store") {
		t.Errorf("restore of a text file: exit %d, %q", code, errs)
	}

	// --data copies a stopped control plane's store, and refuses a
	// running one's (the restored directory's lock is free).
	out, errs, code = run(t, p, p.Admin, "backup", "--data", data, filepath.Join(dir, "again.db"))
	if code != 0 || !strings.Contains(out, "1 user, 1 job") {
		t.Fatalf("backup --data: exit %d\n%s%s", code, out, errs)
	}
	held, err := os.OpenFile(filepath.Join(data, "lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, p, p.Admin, "backup", "--data", data, filepath.Join(dir, "third.db")); code == 0 || !strings.Contains(errs, "is running on "+data+": back up through it") {
		t.Errorf("backup --data of a running store: exit %d, %q", code, errs)
	}
}

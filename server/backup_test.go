package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/store"
)

func TestBackupThroughTheAPI(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	for range 5 {
		submit(t, p.Admin, dspool.JobSpec{Command: []string{"true"}})
	}
	file := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Admin.Backup(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.CheckBackup(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != n || info.Jobs != 5 || info.Users != 1 {
		t.Errorf("the copy: %+v (%d bytes sent); want 5 jobs and 1 user", info, n)
	}
	// Nothing is left beside the store.
	if left, _ := filepath.Glob(p.DB.Path() + ".backup-*"); len(left) != 0 {
		t.Errorf("left beside the store: %v", left)
	}
	es, err := p.Admin.Audit(ctx, api.AuditQuery{Action: dspool.AuditStoreBackup})
	if err != nil || len(es) != 1 || es[0].Outcome != dspool.AuditSuccess {
		t.Errorf("audit: %+v %v; want one store.backup that succeeded", es, err)
	}
}

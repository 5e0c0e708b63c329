package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/store"
)

func sealed(user, team, name, key string, ct string) *store.SealedSecret {
	return &store.SealedSecret{Secret: dspool.Secret{Name: name, User: user, Team: team, CreatedBy: "ada"},
		KeyID: key, Nonce: []byte("nonce-123456"), Ciphertext: []byte(ct)}
}

func TestSecrets(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	s, created, err := db.PutSecret(ctx, sealed("ada", "", "db", "k-1", "c1"))
	if err != nil || !created || s.Name != "db" || s.User != "ada" || s.Team != "" || s.LastReadAt != nil {
		t.Fatalf("put: %+v created %v %v", s, created, err)
	}
	first := s.CreatedAt
	in := sealed("ada", "", "db", "k-1", "c2")
	in.SessionEnv, in.CreatedBy = "DB", "someone-else"
	s, created, err = db.PutSecret(ctx, in)
	if err != nil || created || string(s.Ciphertext) != "c2" || s.SessionEnv != "DB" || s.CreatedBy != "ada" || !s.CreatedAt.Equal(first) {
		t.Fatalf("replace: %+v created %v %v; want the new value, creation kept", s, created, err)
	}
	for _, x := range []*store.SealedSecret{sealed("bob", "", "db", "k-1", "b"), sealed("", "ml", "db", "k-1", "t"), sealed("", "cv", "w", "k-1", "t")} {
		if _, _, err := db.PutSecret(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	list, err := db.SecretsOf(ctx, "ada", []string{"ml"})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, x := range list {
		refs = append(refs, x.Ref())
	}
	if got, want := refs, []string{"db", "ml/db"}; !slices.Equal(got, want) {
		t.Errorf("ada's and ml's secrets: %v, want %v", got, want)
	}
	x, err := db.SecretOf(ctx, "team", "ml", "db")
	if err != nil || string(x.Ciphertext) != "t" {
		t.Fatalf("team secret: %+v %v", x, err)
	}
	if _, err := db.SecretOf(ctx, "user", "ada", "nope"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("missing secret: %v, want not found", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := db.SecretsRead(ctx, []int64{x.ID}, now); err != nil {
		t.Fatal(err)
	}
	if x, _ = db.SecretOf(ctx, "team", "ml", "db"); x.LastReadAt == nil || !x.LastReadAt.Equal(now) {
		t.Errorf("last read %v, want %v", x.LastReadAt, now)
	}
	if err := db.DeleteSecret(ctx, "user", "bob", "db"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSecret(ctx, "user", "bob", "db"); dspool.ErrorCode(err) != dspool.ENotFound {
		t.Errorf("delete twice: %v, want not found", err)
	}

	t.Run("reseal is all or nothing", func(t *testing.T) {
		n := 0
		_, err := db.ResealSecrets(ctx, func(x *store.SealedSecret) error {
			if n++; n == 2 {
				return errors.New("boom")
			}
			x.KeyID = "k-2"
			return nil
		})
		if err == nil {
			t.Fatal("reseal that failed half way succeeded")
		}
		if ids, _ := db.SecretKeyIDs(ctx); !slices.Equal(ids, []string{"k-1"}) {
			t.Fatalf("keys after a failed reseal: %v, want [k-1]", ids)
		}
		n, err = db.ResealSecrets(ctx, func(x *store.SealedSecret) error {
			x.KeyID, x.Ciphertext = "k-2", []byte("new-"+x.Name)
			return nil
		})
		if err != nil || n != 3 {
			t.Fatalf("reseal: %d %v, want 3", n, err)
		}
		if ids, _ := db.SecretKeyIDs(ctx); !slices.Equal(ids, []string{"k-2"}) {
			t.Errorf("keys after reseal: %v, want [k-2]", ids)
		}
	})
}

func TestJobSecretsAreStored(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	u, err := db.CreateUser(ctx, "ada", false)
	if err != nil {
		t.Fatal(err)
	}
	spec := dspool.JobSpec{Command: []string{"true"}, Secrets: []dspool.SecretUse{{Secret: "db"}, {Secret: "ml/key", File: true}}}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	j, _, err := db.SubmitJob(ctx, u.ID, &spec)
	if err != nil {
		t.Fatal(err)
	}
	j, err = db.Job(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []dspool.SecretUse{{Secret: "db", Env: "DB"}, {Secret: "ml/key", File: true}}
	if len(j.Secrets) != 2 || j.Secrets[0] != want[0] || j.Secrets[1] != want[1] {
		t.Errorf("job secrets %+v, want %+v", j.Secrets, want)
	}
}

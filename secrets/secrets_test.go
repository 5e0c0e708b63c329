package secrets_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool/secrets"
)

func newKey(t *testing.T) *secrets.Key {
	t.Helper()
	k, err := secrets.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := newKey(t)
	aad := secrets.AAD(secrets.OwnerUser, "ada", "db-password")
	s, err := k.Seal([]byte("hunter2"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID != k.ID() || bytes.Contains(s.Ciphertext, []byte("hunter2")) {
		t.Fatalf("sealed %+v: want the key's id and no plaintext", s)
	}
	got, err := k.Open(s, aad)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("open: %q, %v; want hunter2", got, err)
	}
	again, _ := k.Seal([]byte("hunter2"), aad)
	if bytes.Equal(again.Nonce, s.Nonce) || bytes.Equal(again.Ciphertext, s.Ciphertext) {
		t.Error("two seals of one value are alike: the nonce is not random")
	}

	tests := []struct {
		name string
		key  *secrets.Key
		s    secrets.Sealed
		aad  []byte
		want error
	}{
		{"another owner", k, s, secrets.AAD(secrets.OwnerUser, "bob", "db-password"), secrets.ErrDamaged},
		{"another name", k, s, secrets.AAD(secrets.OwnerUser, "ada", "other"), secrets.ErrDamaged},
		{"a team's", k, s, secrets.AAD(secrets.OwnerTeam, "ada", "db-password"), secrets.ErrDamaged},
		{"a changed byte", k, secrets.Sealed{KeyID: s.KeyID, Nonce: s.Nonce, Ciphertext: flip(s.Ciphertext)}, aad, secrets.ErrDamaged},
		{"a short nonce", k, secrets.Sealed{KeyID: s.KeyID, Nonce: s.Nonce[:4], Ciphertext: s.Ciphertext}, aad, secrets.ErrDamaged},
		{"another key", newKey(t), s, aad, secrets.ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(tt.s, tt.aad)
			if !errors.Is(err, tt.want) || got != nil {
				t.Errorf("open: %q, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func flip(b []byte) []byte {
	c := bytes.Clone(b)
	c[0] ^= 1
	return c
}

// AAD fields cannot run into each other: ("a", "bc") is not ("ab", "c").
func TestAADIsUnambiguous(t *testing.T) {
	if bytes.Equal(secrets.AAD("user", "a", "bc"), secrets.AAD("user", "ab", "c")) {
		t.Fatal("AAD of different owners and names is equal")
	}
}

func TestParseKey(t *testing.T) {
	k := newKey(t)
	for _, text := range []string{k.Encode(), k.Encode() + "\n", strings.TrimRight(k.Encode(), "=")} {
		got, err := secrets.ParseKey(text)
		if err != nil || got.ID() != k.ID() {
			t.Errorf("ParseKey(%q): %v, %v; want key %s", text, got, err, k.ID())
		}
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 40)} {
		if _, err := secrets.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) succeeded", bad)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.key")
	k := newKey(t)
	if err := secrets.WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", st.Mode(), err)
	}
	got, err := secrets.ReadKeyFile(path)
	if err != nil || got.ID() != k.ID() {
		t.Fatalf("read back: %v, %v", got, err)
	}
	t.Run("readable by others", func(t *testing.T) {
		loose := filepath.Join(dir, "loose.key")
		if err := secrets.WriteKeyFile(loose, k); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(loose, 0o640)
		if _, err := secrets.ReadKeyFile(loose); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("a 0640 key file: %v; want a refusal that says chmod 600", err)
		}
	})
	t.Run("a link", func(t *testing.T) {
		link := filepath.Join(dir, "link.key")
		_ = os.Symlink(path, link)
		if _, err := secrets.ReadKeyFile(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("a link to a key file: %v; want a refusal", err)
		}
	})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secrets.key")
	kr, created, err := secrets.Load(secrets.Source{File: file}, nil)
	if err != nil || !created {
		t.Fatalf("load on a new store: created %v, %v; want the key file made", created, err)
	}
	id := kr.KeyID()
	kr, created, err = secrets.Load(secrets.Source{File: file}, []string{id})
	if err != nil || created || kr.KeyID() != id {
		t.Fatalf("load again: %v created %v %v; want the same key", kr, created, err)
	}

	t.Run("a key that does not fit the store", func(t *testing.T) {
		if _, _, err := secrets.Load(secrets.Source{File: file}, []string{"k-0000000000000000"}); err == nil {
			t.Error("loaded a key the store's secrets are not sealed under")
		}
	})
	t.Run("a missing key file with secrets stored", func(t *testing.T) {
		_, _, err := secrets.Load(secrets.Source{File: filepath.Join(dir, "gone.key")}, []string{id})
		if err == nil || !strings.Contains(err.Error(), "missing") {
			t.Errorf("got %v; want a refusal that says the key file is missing", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "gone.key")); err == nil {
			t.Error("a new key file was made for a store with secrets")
		}
	})
	t.Run("the environment wins", func(t *testing.T) {
		env := newKey(t)
		kr, created, err := secrets.Load(secrets.Source{Env: env.Encode(), File: file}, nil)
		if err != nil || created || kr.KeyID() != env.ID() {
			t.Fatalf("got %v created %v %v; want the key of the environment", kr, created, err)
		}
		if _, _, err := kr.Rotate(func(_, _ *secrets.Key) (int, error) { return 0, nil }); err == nil {
			t.Error("rotated a key that came from the environment")
		}
		if _, _, err := secrets.Load(secrets.Source{Env: "nope"}, nil); err == nil || !strings.Contains(err.Error(), secrets.EnvVar) {
			t.Errorf("a bad key in the environment: %v; want an error naming %s", err, secrets.EnvVar)
		}
	})
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secrets.key")
	kr, _, err := secrets.Load(secrets.Source{File: file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	aad := secrets.AAD(secrets.OwnerUser, "ada", "x")
	var stored secrets.Sealed
	_ = kr.Use(func(k *secrets.Key) error { stored, err = k.Seal([]byte("v"), aad); return err })
	oldFile, _ := secrets.ReadKeyFile(file)

	t.Run("a failed reseal changes nothing", func(t *testing.T) {
		before := kr.KeyID()
		_, _, err := kr.Rotate(func(_, _ *secrets.Key) (int, error) { return 0, errors.New("disk full") })
		if err == nil || kr.KeyID() != before {
			t.Fatalf("got %v, key %s; want the error and key %s kept", err, kr.KeyID(), before)
		}
		if _, err := os.Stat(file + ".new"); !os.IsNotExist(err) {
			t.Errorf("the new key file was left behind: %v", err)
		}
		if k, _ := secrets.ReadKeyFile(file); k.ID() != before {
			t.Error("the key file changed")
		}
	})

	next, n, err := kr.Rotate(func(old, next *secrets.Key) (int, error) {
		p, err := old.Open(stored, aad)
		if err != nil {
			return 0, err
		}
		stored, err = next.Seal(p, aad)
		return 1, err
	})
	if err != nil || n != 1 {
		t.Fatalf("rotate: %d, %v", n, err)
	}
	onDisk, err := secrets.ReadKeyFile(file)
	if err != nil || onDisk.ID() != next.ID() || kr.KeyID() != next.ID() {
		t.Fatalf("after rotation the file holds %v (%v), the keyring %s; want %s", onDisk, err, kr.KeyID(), next.ID())
	}
	if _, err := oldFile.Open(stored, aad); err == nil {
		t.Error("the old key opens a secret after rotation")
	}
	if _, err := os.Stat(file + ".new"); !os.IsNotExist(err) {
		t.Errorf("FILE.new left after rotation: %v", err)
	}
}

// A rotation interrupted after its transaction committed is finished at
// the next start; one interrupted before is dropped.
func TestLoadFinishesRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secrets.key")
	cur, next := newKey(t), newKey(t)
	if err := secrets.WriteKeyFile(file, cur); err != nil {
		t.Fatal(err)
	}
	if err := secrets.WriteKeyFile(file+".new", next); err != nil {
		t.Fatal(err)
	}
	kr, _, err := secrets.Load(secrets.Source{File: file}, []string{cur.ID()})
	if err != nil || kr.KeyID() != cur.ID() {
		t.Fatalf("uncommitted rotation: %v, %v; want the current key", kr, err)
	}
	if _, err := os.Stat(file + ".new"); !os.IsNotExist(err) {
		t.Errorf("the uncommitted key was kept: %v", err)
	}

	if err := secrets.WriteKeyFile(file+".new", next); err != nil {
		t.Fatal(err)
	}
	kr, _, err = secrets.Load(secrets.Source{File: file}, []string{next.ID()})
	if err != nil || kr.KeyID() != next.ID() {
		t.Fatalf("committed rotation: %v, %v; want the new key", kr, err)
	}
	if k, err := secrets.ReadKeyFile(file); err != nil || k.ID() != next.ID() {
		t.Errorf("key file after recovery: %v, %v; want the new key", k, err)
	}
}

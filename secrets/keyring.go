package secrets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/atomicfile"
)

// EnvVar is the environment variable that may hold the key, as base64. When
// it is set it wins: the key file is neither read nor created.
const EnvVar = "DSPOOL_SECRETS_KEY"

// Source says where the key comes from: Env (the value of EnvVar) when set,
// else File.
type Source struct {
	Env  string
	File string
}

// Keyring holds the current key. Sealing and opening take it shared; a
// rotation takes it whole, so no value is sealed under a key that is being
// replaced.
type Keyring struct {
	mu   sync.RWMutex
	key  *Key
	file string // "" when the key came from the environment
}

// NewKeyring returns a keyring of key alone, with no file: it cannot rotate.
func NewKeyring(key *Key) *Keyring { return &Keyring{key: key} }

// Load returns the keyring of a store whose secrets are sealed under the
// keys with ids inUse. With no key file and no secret sealed yet, it creates
// the key file (created is then true). It finishes a rotation that was
// interrupted after its transaction committed, and drops one that was not.
// It refuses a key file that others may read, and a key that does not open
// the store's secrets.
func Load(src Source, inUse []string) (kr *Keyring, created bool, err error) {
	if src.Env != "" {
		k, err := ParseKey(src.Env)
		if err != nil {
			return nil, false, fmt.Errorf("%s %w", EnvVar, err)
		}
		if err := fits(k, inUse, EnvVar); err != nil {
			return nil, false, err
		}
		return &Keyring{key: k}, false, nil
	}
	if src.File == "" {
		return nil, false, errors.New("no key: give a key file or " + EnvVar)
	}
	cur, err := ReadKeyFile(src.File)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	pending := src.File + ".new"
	if next, perr := ReadKeyFile(pending); perr == nil {
		if slices.Contains(inUse, next.ID()) && (cur == nil || !slices.Contains(inUse, cur.ID())) {
			if err := replace(pending, src.File); err != nil {
				return nil, false, fmt.Errorf("finish the interrupted key rotation: %w", err)
			}
			cur = next
		} else if err := os.Remove(pending); err != nil {
			return nil, false, fmt.Errorf("drop the key of an interrupted rotation: %w", err)
		}
	} else if !errors.Is(perr, os.ErrNotExist) {
		return nil, false, perr
	}
	if cur == nil {
		if len(inUse) > 0 {
			return nil, false, fmt.Errorf("the store holds secrets sealed under key %s, but the key file %s is missing: restore it from a backup, or give the key in %s",
				inUse[0], src.File, EnvVar)
		}
		if cur, err = NewKey(); err != nil {
			return nil, false, err
		}
		if err := WriteKeyFile(src.File, cur); err != nil {
			return nil, false, err
		}
		created = true
	}
	if err := fits(cur, inUse, src.File); err != nil {
		return nil, false, err
	}
	return &Keyring{key: cur, file: src.File}, created, nil
}

// fits checks that every sealed secret is under k.
func fits(k *Key, inUse []string, from string) error {
	for _, id := range inUse {
		if id != k.ID() {
			return fmt.Errorf("the store holds secrets sealed under key %s, but the key in %s is %s: give the key this store was sealed with", id, from, k.ID())
		}
	}
	return nil
}

// Use calls fn with the current key, which no rotation replaces until fn
// returns: read or write the store inside fn.
func (kr *Keyring) Use(fn func(*Key) error) error {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return fn(kr.key)
}

// KeyID is the current key's id.
func (kr *Keyring) KeyID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.key.ID()
}

// Rotate replaces the key with a new one. The new key is written first
// beside the key file (FILE.new); reseal then re-encrypts every secret
// from the old key to the new one in one transaction; once it has
// committed, FILE.new replaces FILE. A crash in between is finished or
// undone by Load. It returns the new key and what reseal returned.
func (kr *Keyring) Rotate(reseal func(old, next *Key) (int, error)) (*Key, int, error) {
	if kr.file == "" {
		return nil, 0, dspool.Errorf(dspool.EConflict, "the key comes from %s, which dspool cannot change: the key file is for rotation (unset %s, and start the control plane with the same key in DATA/secrets.key)", EnvVar, EnvVar)
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	next, err := NewKey()
	if err != nil {
		return nil, 0, err
	}
	pending := kr.file + ".new"
	if err := WriteKeyFile(pending, next); err != nil {
		return nil, 0, err
	}
	n, err := reseal(kr.key, next)
	if err != nil {
		_ = os.Remove(pending)
		return nil, 0, err
	}
	// The store is under the new key from here on, whatever happens to
	// the file: Load takes FILE.new when it finds it.
	kr.key = next
	if err := replace(pending, kr.file); err != nil {
		return next, n, fmt.Errorf("the secrets are under the new key, which is in %s; replacing %s with it failed (the next start finishes it): %w", pending, kr.file, err)
	}
	return next, n, nil
}

// ReadKeyFile reads a key file. It must be a regular file (not a link) of
// this process's user, that no one else may read or write.
func ReadKeyFile(path string) (*Key, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("key file %s is a symbolic link: give the file itself", path)
		}
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o: others may read it; it must be readable by its owner only (chmod 600 %s)", path, perm, path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("key file %s belongs to uid %d, not to this process's user (uid %d)", path, sys.Uid, os.Geteuid())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k to path atomically, with mode 0600: a new file
// beside it, synced, renamed over it.
func WriteKeyFile(path string, k *Key) error {
	if err := atomicfile.Write(path, []byte(k.Encode()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return nil
}

// replace renames from over to and makes the rename durable.
func replace(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

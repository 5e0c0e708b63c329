package cli

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dspool/dspool/internal/atomicfile"
)

// workTokenKeySize is the length of the work token key, in bytes.
const workTokenKeySize = 32

// workTokenKey loads the key that signs the API tokens of jobs and
// sessions, DATA/work-tokens.key, making it (random, mode 0600) the first
// time. It outlives restarts, so that running work keeps its token; a key
// that others may read, or that is a link, is refused: with it anyone forges
// the token of any running job.
func workTokenKey(data string) ([]byte, error) {
	file := filepath.Join(data, "work-tokens.key")
	st, err := os.Lstat(file)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, workTokenKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(file, key, 0o600); err != nil {
			return nil, fmt.Errorf("make the work token key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the work token key: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the work token key %s is %s: it must be a file only its owner may read (chmod 600 %s), or remove it to make a new one, which ends the tokens of running jobs and sessions", file, st.Mode(), file)
	}
	key, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("the work token key: %w", err)
	}
	if len(key) != workTokenKeySize {
		return nil, fmt.Errorf("the work token key %s holds %d bytes, not %d: remove it to make a new one, which ends the tokens of running jobs and sessions", file, len(key), workTokenKeySize)
	}
	return key, nil
}

// Package password hashes and checks user passwords with argon2id, in the
// PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash), so the
// parameters can be raised later without breaking stored hashes.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/dspool/dspool"
	"golang.org/x/crypto/argon2"
)

// The parameters of new hashes: OWASP's argon2id baseline (19 MiB, two
// passes, one lane), which keeps many concurrent logins affordable.
const (
	memoryKiB = 19 * 1024
	passes    = 2
	lanes     = 1
	keyLen    = 32
	saltLen   = 16
)

// Bounds of a password.
const (
	MinLen = 8
	MaxLen = 1024
)

// Check returns an EInvalid error naming "password" when pw is too short,
// too long or not text.
func Check(pw string) error {
	switch {
	case !utf8.ValidString(pw) || strings.ContainsRune(pw, 0):
		return dspool.Invalid("password", "must be UTF-8 text without NUL bytes")
	case utf8.RuneCountInString(pw) < MinLen:
		return dspool.Invalid("password", "is too short: use at least %d characters (a passphrase of a few words is best)", MinLen)
	case len(pw) > MaxLen:
		return dspool.Invalid("password", "is too long: at most %d bytes", MaxLen)
	case strings.TrimSpace(pw) == "":
		return dspool.Invalid("password", "is only spaces")
	}
	return nil
}

// Hash returns the PHC string of pw with a new random salt.
func Hash(pw string) (string, error) {
	if err := Check(pw); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, passes, memoryKiB, lanes, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memoryKiB, passes, lanes,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrMismatch is a wrong password.
var ErrMismatch = errors.New("password does not match")

// params are a stored hash's argon2id parameters, salt and key.
type params struct {
	memory, passes uint32
	lanes          uint8
	salt, key      []byte
}

// parse reads a PHC string made by Hash; parameters beyond what dspool
// would ever write (256 MiB, 10 passes) are refused, so a damaged store
// cannot make a login hang.
func parse(hash string) (*params, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, errors.New("not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return nil, errors.New("unsupported argon2 version")
	}
	var x params
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &x.memory, &x.passes, &x.lanes); err != nil || n != 3 ||
		x.memory < 8 || x.memory > 256<<10 || x.passes == 0 || x.passes > 10 || x.lanes == 0 || x.lanes > 16 {
		return nil, errors.New("bad argon2 parameters")
	}
	b64 := base64.RawStdEncoding
	var err error
	if x.salt, err = b64.DecodeString(parts[4]); err != nil || len(x.salt) < 8 {
		return nil, errors.New("bad salt")
	}
	if x.key, err = b64.DecodeString(parts[5]); err != nil || len(x.key) < 16 || len(x.key) > 64 {
		return nil, errors.New("bad hash")
	}
	return &x, nil
}

// Verify checks pw against a PHC string made by Hash. A malformed hash is
// an error, never a match.
func Verify(hash, pw string) error {
	x, err := parse(hash)
	if err != nil {
		return err
	}
	got := argon2.IDKey([]byte(pw), x.salt, x.passes, x.memory, x.lanes, uint32(len(x.key)))
	if subtle.ConstantTimeCompare(got, x.key) != 1 {
		return ErrMismatch
	}
	return nil
}

// dummy is a hash checked when a login names no user with a password, so
// the answer takes as long as a real check. It is made on first use: hashing
// at start would cost every dspool command 35 ms.
var dummy = sync.OnceValue(func() string {
	h, _ := Hash("dspool: no such password")
	return h
})

// VerifyMissing spends the time of a real check and fails.
func VerifyMissing(pw string) error {
	_ = Verify(dummy(), pw)
	return ErrMismatch
}

// Package secrets seals dspool's secrets at rest: each value is encrypted
// with AES-256-GCM under the pool's key-encryption key (KEK), bound by its
// additional data to the secret's owner and name, so that the store holds
// only ciphertext, a nonce and the id of the key. It also keeps the KEK: a
// key file of mode 0600 beside the store, or the environment, and rotates it.
//
// It stores no secret itself and never logs: values pass through it back to
// the caller, and its errors never hold them.
package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of a key-encryption key: AES-256.
const KeySize = 32

// Key is a key-encryption key.
type Key struct {
	raw  [KeySize]byte
	id   string
	aead cipher.AEAD
}

// NewKey returns a random key.
func NewKey() (*Key, error) {
	var raw [KeySize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("make a key: %w", err)
	}
	return newKey(raw)
}

func newKey(raw [KeySize]byte) (*Key, error) {
	block, err := aes.NewCipher(raw[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("dspool secrets key id\x00"), raw[:]...))
	return &Key{raw: raw, id: "k-" + hex.EncodeToString(sum[:8]), aead: aead}, nil
}

// ParseKey reads a key written as base64 (standard or URL alphabet, with or
// without padding) of 32 bytes, as in a key file or DSPOOL_SECRETS_KEY.
func ParseKey(text string) (*Key, error) {
	text = strings.TrimSpace(text)
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(text); err == nil {
			break
		}
	}
	if err != nil || len(b) != KeySize {
		return nil, errors.New("is not a key: want the base64 of 32 random bytes (head -c 32 /dev/urandom | base64)")
	}
	var raw [KeySize]byte
	copy(raw[:], b)
	return newKey(raw)
}

// ID names the key without revealing it; every sealed value records it.
func (k *Key) ID() string { return k.id }

// Encode is the key as a key file holds it.
func (k *Key) Encode() string { return base64.StdEncoding.EncodeToString(k.raw[:]) }

// Sealed is a value as the store keeps it.
type Sealed struct {
	KeyID      string
	Nonce      []byte
	Ciphertext []byte
}

// Owner kinds, part of what a sealed value is bound to.
const (
	OwnerUser = "user"
	OwnerTeam = "team"
)

// AAD is what a secret's ciphertext is bound to: its owner and name. A
// ciphertext moved to another row of the store does not open.
func AAD(kind, owner, name string) []byte {
	var b bytes.Buffer
	for _, s := range []string{"dspool-secret/1", kind, owner, name} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// Seal encrypts plaintext under k with a random nonce.
func (k *Key) Seal(plaintext, aad []byte) (Sealed, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("seal: %w", err)
	}
	return Sealed{KeyID: k.id, Nonce: nonce, Ciphertext: k.aead.Seal(nil, nonce, plaintext, aad)}, nil
}

// ErrWrongKey is the error of opening a value sealed under another key.
var ErrWrongKey = errors.New("sealed under another key")

// ErrDamaged is the error of a ciphertext that does not authenticate: it was
// changed, or moved from another secret.
var ErrDamaged = errors.New("does not authenticate (changed, or moved from another secret)")

// Open decrypts s, which must have been sealed under k with the same aad.
func (k *Key) Open(s Sealed, aad []byte) ([]byte, error) {
	if s.KeyID != k.id {
		return nil, fmt.Errorf("%w: %s, not the current %s", ErrWrongKey, s.KeyID, k.id)
	}
	if len(s.Nonce) != k.aead.NonceSize() {
		return nil, ErrDamaged
	}
	p, err := k.aead.Open(nil, s.Nonce, s.Ciphertext, aad)
	if err != nil {
		return nil, ErrDamaged
	}
	return p, nil
}

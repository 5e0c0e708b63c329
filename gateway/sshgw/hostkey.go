package sshgw

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/dspool/dspool/gateway/internal/ssh"
)

// HostKey is the gateway's host key. It is a type of its own rather than
// an ssh.Signer because the gateway's SSH server is its own copy of
// x/crypto/ssh (gateway/internal/ssh), whose types are not upstream's: the
// rest of dspool, which uses upstream's, hands the gateway a crypto.Signer
// and reads back a fingerprint.
type HostKey struct {
	signer ssh.Signer
}

// NewHostKey returns the host key of a private key (Ed25519, ECDSA or RSA).
func NewHostKey(key crypto.Signer) (*HostKey, error) {
	s, err := ssh.NewSignerFromSigner(key)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return &HostKey{signer: s}, nil
}

// Fingerprint is the key's SHA256 fingerprint as ssh-keygen -l shows it.
func (k *HostKey) Fingerprint() string {
	return ssh.FingerprintSHA256(k.signer.PublicKey())
}

// LoadOrCreateHostKey reads the host key at path, creating an Ed25519 key
// (mode 0600) the first time, so the gateway's fingerprint stays the same
// across restarts.
func LoadOrCreateHostKey(path string) (*HostKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(priv, "dspool gateway host key")
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create host key %s: %w", path, err)
		}
		if _, err := f.Write(pem.EncodeToMemory(blk)); err != nil {
			f.Close()
			return nil, fmt.Errorf("write host key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w (remove it to make a new one; clients will see a new fingerprint)", path, err)
	}
	return &HostKey{signer: s}, nil
}

// ParseHostKey reads a host key from an OpenSSH private key in PEM.
func ParseHostKey(pemBytes []byte) (*HostKey, error) {
	s, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return &HostKey{signer: s}, nil
}

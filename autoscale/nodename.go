package autoscale

import (
	"crypto/rand"
	"encoding/hex"
)

// NodeName makes a new node's name for a provider that names its machines:
// the pool's (cut to leave a DNS label of at most 63 characters), and a
// random suffix.
func NodeName(pool string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	if len(pool) > 54 {
		pool = pool[:54]
	}
	return pool + "-" + hex.EncodeToString(b[:])
}

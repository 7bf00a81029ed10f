package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// Token prefixes (SPEC §9).
const (
	AdminPrefix     = "apa_"
	WorkspacePrefix = "apw_"
	// PrefixLen is how many leading characters are kept in clear for display.
	PrefixLen = 12
)

// NewToken returns a fresh token with the given prefix ("apa_" or "apw_"),
// its SHA-256 and its display prefix. Only the hash is ever stored.
func NewToken(prefix string) (plain string, hash []byte, display string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the OS RNG does not fail; if it does, nothing is safe
	}
	plain = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return plain, HashToken(plain), plain[:PrefixLen]
}

// HashToken is the stored form of a credential.
func HashToken(plain string) []byte {
	h := sha256.Sum256([]byte(plain))
	return h[:]
}

// plausible reports whether s could be a credential at all: issued tokens and
// --admin-token values (16+ characters) pass; anything else is refused without
// a database lookup.
func plausible(s string) bool {
	if len(s) < 16 || len(s) > 512 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

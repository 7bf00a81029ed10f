// Package callersig signs and verifies the X-Agentplane-Caller header, by
// which the agentplane gateway tells an agent who is calling it (SPEC §7.4).
//
// The header is
//
//	X-Agentplane-Caller: v1;caller=<caller>;ts=<unix seconds>;body=<sha256>;sig=<hmac>
//
// where caller is "admin", "canvas" or "workspace:<id>", body is the
// base64url SHA-256 of the request body, and sig is the base64url
// HMAC-SHA256, keyed with the workspace's outbound secret, of
// "v1\n<caller>\n<ts>\n<body>". An agent learns its secret from the answer to
// POST /registry/register (caller_secret) and verifies every request with
// Verify before trusting the caller.
package callersig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header is the header's name.
const Header = "X-Agentplane-Caller"

// MaxSkew is how far a signature's timestamp may be from the verifier's clock.
const MaxSkew = 5 * time.Minute

// Errors returned by Verify.
var (
	ErrMissing   = errors.New("callersig: header missing")
	ErrMalformed = errors.New("callersig: header malformed")
	ErrExpired   = errors.New("callersig: timestamp outside the allowed skew")
	ErrBody      = errors.New("callersig: body does not match the signed hash")
	ErrSignature = errors.New("callersig: signature invalid")
)

var b64 = base64.RawURLEncoding

func bodyHash(body []byte) string {
	h := sha256.Sum256(body)
	return b64.EncodeToString(h[:])
}

func mac(secret []byte, caller string, ts int64, hash string) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "v1\n%s\n%d\n%s", caller, ts, hash)
	return b64.EncodeToString(m.Sum(nil))
}

// Sign returns the header value for a request with body from caller, signed
// with secret at time now.
func Sign(secret []byte, caller string, body []byte, now time.Time) string {
	ts := now.Unix()
	hash := bodyHash(body)
	return fmt.Sprintf("v1;caller=%s;ts=%d;body=%s;sig=%s", caller, ts, hash, mac(secret, caller, ts, hash))
}

// Caller is a verified caller.
type Caller struct {
	// ID is "admin", "canvas" or "workspace:<id>".
	ID string
	// SignedAt is the signature's timestamp.
	SignedAt time.Time
}

// Verify checks a header value against the request body it came with, the
// workspace's outbound secret and the verifier's clock; it returns the
// caller when everything matches. Comparisons are constant-time.
func Verify(secret []byte, value string, body []byte, now time.Time) (Caller, error) {
	if value == "" {
		return Caller{}, ErrMissing
	}
	fields := map[string]string{}
	parts := strings.Split(value, ";")
	if parts[0] != "v1" {
		return Caller{}, ErrMalformed
	}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok || fields[k] != "" {
			return Caller{}, ErrMalformed
		}
		fields[k] = v
	}
	caller, tsText, hash, sig := fields["caller"], fields["ts"], fields["body"], fields["sig"]
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if caller == "" || err != nil || hash == "" || sig == "" {
		return Caller{}, ErrMalformed
	}
	signedAt := time.Unix(ts, 0)
	if d := now.Sub(signedAt); d > MaxSkew || d < -MaxSkew {
		return Caller{}, ErrExpired
	}
	if !hmac.Equal([]byte(mac(secret, caller, ts, hash)), []byte(sig)) {
		return Caller{}, ErrSignature
	}
	if !hmac.Equal([]byte(bodyHash(body)), []byte(hash)) {
		return Caller{}, ErrBody
	}
	return Caller{ID: caller, SignedAt: signedAt}, nil
}

// VerifyRequest verifies r's header against body (the request body the
// caller already read).
func VerifyRequest(secret []byte, r *http.Request, body []byte, now time.Time) (Caller, error) {
	return Verify(secret, r.Header.Get(Header), body, now)
}

// Package fault is the typed error domain code returns when a request cannot
// be served: bad input naming its field, forbidden, gone, busy … The HTTP layer
// (httpapi) maps a Kind to a status code in one place; domain packages never
// import HTTP and never match on error text.
package fault

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies a fault; each maps to one HTTP status.
type Kind int

// Kinds of fault.
const (
	KindInvalid      Kind = iota + 1 // 400
	KindUnauthorized                 // 401
	KindForbidden                    // 403
	KindNotFound                     // 404
	KindConflict                     // 409
	KindGone                         // 410
	KindTooLarge                     // 413
	KindRateLimited                  // 429
	KindUnavailable                  // 503
	KindTimeout                      // 504
	KindBadGateway                   // 502
)

// Error is a fault with a human message. Field names the offending input for
// KindInvalid; Code is a stable machine-readable reason (e.g.
// "confirmation_required").
type Error struct {
	Kind       Kind
	Field      string
	Code       string
	Msg        string
	RetryAfter time.Duration
	// Details is extra JSON-encodable data for the response body.
	Details map[string]any
	// Err is an optional cause (logged, never shown).
	Err error
}

func (e *Error) Error() string {
	if e.Field != "" && e.Msg != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// As extracts a *Error from err's chain.
func As(err error) (*Error, bool) {
	var f *Error
	ok := errors.As(err, &f)
	return f, ok
}

// Invalid reports bad input in field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Unauthorized reports missing or invalid credentials. The message is the same
// for every cause so that failures look alike.
func Unauthorized() *Error {
	return &Error{Kind: KindUnauthorized, Msg: "missing or invalid credentials"}
}

// Forbidden reports an authenticated caller that may not do this.
func Forbidden(format string, args ...any) *Error {
	return &Error{Kind: KindForbidden, Msg: fmt.Sprintf(format, args...)}
}

// NotFound reports that what was addressed does not exist.
func NotFound(what string) *Error {
	return &Error{Kind: KindNotFound, Msg: what + " not found"}
}

// Conflict reports a state conflict with a stable code.
func Conflict(code, format string, args ...any) *Error {
	return &Error{Kind: KindConflict, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Unavailable reports a temporary inability to serve, with a retry hint.
func Unavailable(retryAfter time.Duration, format string, args ...any) *Error {
	return &Error{Kind: KindUnavailable, RetryAfter: retryAfter, Msg: fmt.Sprintf(format, args...)}
}

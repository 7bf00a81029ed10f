// Package httpapi is the one way agentplane reads and writes JSON over HTTP
// (SPEC §4): capped bodies (413), unknown fields ignored, wrong types → 400
// naming the field, errors as {"error": …}, and one mapping from domain errors
// (fault.Error, store sentinels) to status codes.
//
// It holds no business rules and never talks to the store.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
)

// DefaultMaxBody is the default request body cap (SPEC §4).
const DefaultMaxBody = 1 << 20

// Decode reads one JSON object from r's body, at most maxBytes long, into dst.
// Unknown fields are ignored; invalid UTF-8 in strings becomes U+FFFD. The
// returned error is a *fault.Error ready for WriteError.
func Decode(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBody
	}
	body := http.MaxBytesReader(w, r.Body, maxBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, maxBytes)
	}
	// Anything but whitespace after the object is a malformed body.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(maxBytes)
		}
		return &fault.Error{Kind: fault.KindInvalid, Field: "body", Msg: "unexpected data after the JSON object"}
	}
	return nil
}

func tooLarge(max int64) *fault.Error {
	return &fault.Error{Kind: fault.KindTooLarge, Field: "body", Msg: fmt.Sprintf("request body exceeds %d bytes", max)}
}

func decodeError(err error, maxBytes int64) *fault.Error {
	var (
		mbe     *http.MaxBytesError
		typeErr *json.UnmarshalTypeError
		synErr  *json.SyntaxError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(maxBytes)
	case errors.Is(err, io.EOF):
		return &fault.Error{Kind: fault.KindInvalid, Field: "body", Msg: "a JSON object is required"}
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return &fault.Error{Kind: fault.KindInvalid, Field: "body", Msg: fmt.Sprintf("must be a JSON object, not %s", typeErr.Value)}
		}
		return &fault.Error{Kind: fault.KindInvalid, Field: field, Msg: fmt.Sprintf("must be %s, not %s", jsonTypeName(typeErr.Type.String()), typeErr.Value)}
	case errors.As(err, &synErr):
		return &fault.Error{Kind: fault.KindInvalid, Field: "body", Msg: fmt.Sprintf("malformed JSON at byte %d", synErr.Offset)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &fault.Error{Kind: fault.KindInvalid, Field: "body", Msg: "malformed JSON: unexpected end of input"}
	}
	return &fault.Error{Kind: fault.KindInvalid, Field: "body", Msg: "malformed JSON", Err: err}
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "struct"), strings.HasPrefix(goType, "*"):
		return "an object"
	case goType == "time.Duration":
		return "a duration string"
	}
	return "of type " + goType
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Status returns the HTTP status for err.
func Status(err error) int {
	if f, ok := fault.As(err); ok {
		return kindStatus(f.Kind)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrNotMigrated):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func kindStatus(k fault.Kind) int {
	switch k {
	case fault.KindInvalid:
		return http.StatusBadRequest
	case fault.KindUnauthorized:
		return http.StatusUnauthorized
	case fault.KindForbidden:
		return http.StatusForbidden
	case fault.KindNotFound:
		return http.StatusNotFound
	case fault.KindConflict:
		return http.StatusConflict
	case fault.KindGone:
		return http.StatusGone
	case fault.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case fault.KindRateLimited:
		return http.StatusTooManyRequests
	case fault.KindUnavailable:
		return http.StatusServiceUnavailable
	case fault.KindTimeout:
		return http.StatusGatewayTimeout
	case fault.KindBadGateway:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// WriteError writes err as {"error": …[, "code": …, "field": …]} with the
// mapped status. Unexpected errors are logged and answered with a generic 500
// so that internals never leak; store outages are 503 with Retry-After.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status := Status(err)
	body := map[string]any{}
	if f, ok := fault.As(err); ok {
		body["error"] = f.Error()
		if f.Code != "" {
			body["code"] = f.Code
		}
		if f.Field != "" {
			body["field"] = f.Field
		}
		for k, v := range f.Details {
			if _, taken := body[k]; !taken {
				body[k] = v
			}
		}
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
		}
		if status >= 500 && f.Err != nil && log != nil {
			log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", f.Err)
		}
	} else {
		switch status {
		case http.StatusServiceUnavailable:
			body["error"] = "the store is temporarily unavailable; retry shortly"
			body["code"] = "store_unavailable"
			w.Header().Set("Retry-After", "2")
		case http.StatusGatewayTimeout:
			body["error"] = "timed out"
		case http.StatusNotFound:
			body["error"] = "not found"
		case http.StatusConflict:
			body["error"] = "conflict"
		case http.StatusBadRequest:
			body["error"] = "the store refused a value in the request"
		default:
			body["error"] = "internal error"
		}
		if log != nil {
			level := slog.LevelWarn
			if status == http.StatusInternalServerError {
				level = slog.LevelError
			}
			log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		}
	}
	WriteJSON(w, status, body)
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Ceil(d.Seconds()))))
}

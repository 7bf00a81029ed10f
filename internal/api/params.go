package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/google/uuid"
)

// pathID returns a path parameter that must be a uuid (400 otherwise).
func pathID(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	id, err := uuid.Parse(v)
	if err != nil {
		return "", fault.Invalid(name, "must be a uuid, got %q", truncateForMsg(v))
	}
	return id.String(), nil
}

func truncateForMsg(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// limitParam reads ?limit (default def, at most max).
func limitParam(r *http.Request, def, max int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, fault.Invalid("limit", "must be an integer between 1 and %d", max)
	}
	return n, nil
}

// cursorParam reads an id cursor (?after or ?before) that must be a uuid.
func cursorParam(r *http.Request, name string) (string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return "", nil
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return "", fault.Invalid(name, "must be the id of the last item seen")
	}
	return id.String(), nil
}

// pageAfter reads ?limit (default 100, at most max) and the ?after cursor of
// lists paged forward by id.
func pageAfter(r *http.Request, max int) (limit int, after string, err error) {
	if limit, err = limitParam(r, 100, max); err != nil {
		return 0, "", err
	}
	after, err = cursorParam(r, "after")
	return limit, after, err
}

// writeList answers a JSON array of items converted by conv (never null).
func writeList[T, U any](w http.ResponseWriter, items []T, conv func(T) U) {
	out := make([]U, 0, len(items))
	for _, it := range items {
		out = append(out, conv(it))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// optionalString distinguishes an absent JSON field from null and from a
// value: Set is false when absent; Null is true for null.
type optionalString struct {
	Set   bool
	Null  bool
	Value string
}

func (o *optionalString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if bytes.Equal(b, []byte("null")) {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

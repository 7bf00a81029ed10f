package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/stretchr/testify/require"
)

type payload struct {
	Name   string            `json:"name"`
	Count  int               `json:"count"`
	Rate   float64           `json:"rate"`
	Tags   []string          `json:"tags"`
	Nested struct{ On bool } `json:"nested"`
}

func decode(t *testing.T, body string, max int64) (payload, *httptest.ResponseRecorder, error) {
	t.Helper()
	var p payload
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(body))
	err := Decode(w, r, max, &p)
	if err != nil {
		WriteError(w, r, slog.New(slog.NewTextHandler(io.Discard, nil)), err)
	}
	return p, w, err
}

func errorBody(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &m))
	return m
}

func TestDecode(t *testing.T) {
	t.Parallel()

	t.Run("UnknownFieldsIgnored", func(t *testing.T) {
		t.Parallel()
		p, _, err := decode(t, `{"name":"a","other_platform_field":{"x":1}}`, 0)
		require.NoError(t, err)
		require.Equal(t, "a", p.Name)
	})

	t.Run("InvalidUTF8Replaced", func(t *testing.T) {
		t.Parallel()
		p, _, err := decode(t, "{\"name\":\"ok\xff\xfe\"}", 0)
		require.NoError(t, err)
		require.Equal(t, "ok\uFFFD\uFFFD", p.Name)
	})

	cases := []struct {
		name, body string
		max        int64
		status     int
		field      string
		msg        string
	}{
		{"WrongTypeNamesField", `{"count":"three"}`, 0, 400, "count", "count: must be an integer, not string"},
		{"WrongTypeNested", `{"nested":{"On":"yes"}}`, 0, 400, "nested.On", "must be a boolean"},
		{"WrongTypeArray", `{"tags":"a"}`, 0, 400, "tags", "must be an array"},
		{"FloatForInt", `{"count":1.5}`, 0, 400, "count", "must be an integer"},
		{"NotAnObject", `[1,2]`, 0, 400, "body", "must be a JSON object"},
		{"Empty", ``, 0, 400, "body", "a JSON object is required"},
		{"Malformed", `{"name":`, 0, 400, "body", "malformed JSON"},
		{"SyntaxError", `{"name" "x"}`, 0, 400, "body", "malformed JSON at byte"},
		{"TrailingData", `{"name":"x"} {"name":"y"}`, 0, 400, "body", "unexpected data"},
		{"TooLarge", `{"name":"` + strings.Repeat("x", 2000) + `"}`, 1024, 413, "body", "exceeds 1024 bytes"},
		{"TooLargeDefault", `{"name":"` + strings.Repeat("x", DefaultMaxBody) + `"}`, 0, 413, "body", "exceeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, w, err := decode(t, tc.body, tc.max)
			require.Error(t, err)
			require.Equal(t, tc.status, w.Code)
			b := errorBody(t, w)
			require.Equal(t, tc.field, b["field"])
			require.Contains(t, b["error"], tc.msg)
		})
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		err        error
		status     int
		body       string
		retryAfter string
	}{
		{"Invalid", fault.Invalid("name", "must not be empty"), 400, "name: must not be empty", ""},
		{"Conflict", fault.Conflict("confirmation_required", "workspace has children"), 409, "workspace has children", ""},
		{"Unavailable", fault.Unavailable(1500*time.Millisecond, "agent busy"), 503, "agent busy", "2"},
		{"StoreNotFound", fmt.Errorf("get: %w", store.ErrNotFound), 404, "not found", ""},
		{"StoreConflict", fmt.Errorf("x: %w", store.ErrConflict), 409, "conflict", ""},
		{"StoreUnavailable", fmt.Errorf("x: %w", store.ErrUnavailable), 503, "store is temporarily unavailable", "2"},
		{"Unexpected", errors.New("pq: secret internals"), 500, "internal error", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			WriteError(w, httptest.NewRequest("GET", "/", nil), slog.New(slog.NewTextHandler(io.Discard, nil)), tc.err)
			require.Equal(t, tc.status, w.Code)
			require.Equal(t, "application/json", w.Header().Get("Content-Type"))
			b := errorBody(t, w)
			require.Contains(t, b["error"], tc.body)
			require.NotContains(t, w.Body.String(), "secret internals")
			require.Equal(t, tc.retryAfter, w.Header().Get("Retry-After"))
		})
	}
}

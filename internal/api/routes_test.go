package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/stretchr/testify/require"
)

func TestRouteTable(t *testing.T) {
	t.Parallel()
	noAuth := BuildOptions{Authn: nopAuthn{}}

	t.Run("EveryRouteHasAValidAuthClass", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, rt := range b.server.Routes() {
			require.True(t, rt.Auth.Valid(), "%s %s has auth class %q", rt.Method, rt.Pattern, rt.Auth)
			require.NotNil(t, rt.Handler, "%s %s", rt.Method, rt.Pattern)
		}
	})

	t.Run("BuildRefusesRouteWithoutAuthClass", func(t *testing.T) {
		t.Parallel()
		_, err := Build([]Route{{Method: "GET", Pattern: "/x", Handler: func(http.ResponseWriter, *http.Request) {}}}, noAuth)
		require.ErrorContains(t, err, `route GET /x: auth class ""`)
		_, err = Build([]Route{{Method: "GET", Pattern: "/x", Auth: "admin-ish", Handler: func(http.ResponseWriter, *http.Request) {}}}, noAuth)
		require.ErrorContains(t, err, "admin-ish")
	})

	t.Run("BuildRefusesDuplicatesAndMissingHandlers", func(t *testing.T) {
		t.Parallel()
		h := func(http.ResponseWriter, *http.Request) {}
		_, err := Build([]Route{{"GET", "/x", auth.Public, h}, {"GET", "/x", auth.Admin, h}}, noAuth)
		require.ErrorContains(t, err, "registered twice")
		_, err = Build([]Route{{"GET", "/x", auth.Public, nil}}, noAuth)
		require.ErrorContains(t, err, "no handler")
		_, err = Build(nil, BuildOptions{})
		require.ErrorContains(t, err, "no authenticator")
	})

	t.Run("RouterResolvesAgentPlatformPairs", func(t *testing.T) {
		t.Parallel()
		ok := func(name string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name+":"+r.PathValue("id")) }
		}
		h, err := Build([]Route{
			{"GET", "/registry/discover/{id}", auth.Public, ok("discover")},
			{"GET", "/registry/{id}/peers", auth.Public, ok("peers")},
		}, noAuth)
		require.NoError(t, err)
		for path, want := range map[string]string{"/registry/discover/abc": "discover:abc", "/registry/abc/peers": "peers:abc"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
			require.Equal(t, want, w.Body.String())
		}
	})
}

// clientSeq gives every matrix request its own client address, so that the
// failure rate limiter (tested on its own) does not mix cases.
var clientSeq atomic.Int64

type nopAuthn struct{}

func (nopAuthn) Authenticate(*http.Request) (*auth.Principal, error) { return nil, nil }

// outcome is what the auth layer decided: passed to the handler, or refused.
type outcome string

const (
	pass    outcome = "pass"
	deny401 outcome = "401"
	deny403 outcome = "403"
	deny410 outcome = "410"
	deny429 outcome = "429"
)

func observed(code int) outcome {
	switch code {
	case 401:
		return deny401
	case 403:
		return deny403
	case 410:
		return deny410
	case 429:
		return deny429
	}
	return pass
}

type credential struct {
	name string
	opts func(b *testBundle) []reqOpt
}

var credentials = []credential{
	{"None", func(b *testBundle) []reqOpt { return nil }},
	{"AdminBearer", func(b *testBundle) []reqOpt { return []reqOpt{bearer(adminToken)} }},
	{"OwnWorkspaceToken", func(b *testBundle) []reqOpt { return []reqOpt{bearer(b.ownToken)} }},
	{"OtherWorkspaceToken", func(b *testBundle) []reqOpt { return []reqOpt{bearer(b.otherToken)} }},
	{"RevokedToken", func(b *testBundle) []reqOpt { return []reqOpt{bearer(b.revokedToken)} }},
	{"RemovedWorkspaceToken", func(b *testBundle) []reqOpt { return []reqOpt{bearer(b.removedToken)} }},
	{"InvalidBearerAllowedOrigin", func(b *testBundle) []reqOpt {
		return []reqOpt{bearer("apa_notarealtokennotarealtokennotarealtoken12"), header("Origin", "http://example.com"), cookie(b.session)}
	}},
	{"SessionMatchingOrigin", func(b *testBundle) []reqOpt {
		return []reqOpt{cookie(b.session), header("Origin", "http://example.com")}
	}},
	{"SessionAllowedOrigin", func(b *testBundle) []reqOpt {
		return []reqOpt{cookie(b.session), header("Origin", "https://canvas.example.com")}
	}},
	{"SessionWithoutOrigin", func(b *testBundle) []reqOpt { return []reqOpt{cookie(b.session)} }},
	{"SessionForeignOrigin", func(b *testBundle) []reqOpt {
		return []reqOpt{cookie(b.session), header("Origin", "https://evil.example")}
	}},
}

// expected derives the auth outcome from the route's class and the
// credential alone. {id} in a path is the own workspace.
func expected(rt Route, cred string) outcome {
	safe := rt.Method == http.MethodGet
	if rt.Auth == auth.Public || rt.Auth == auth.SignedWebhook {
		return pass
	}
	adminOK := rt.Auth == auth.Admin || rt.Auth == auth.AdminOrOwn || rt.Auth == auth.AdminOrWorkspace || rt.Auth == auth.Stream
	hasID := strings.Contains(rt.Pattern, "{id}")
	switch cred {
	case "None", "RevokedToken", "InvalidBearerAllowedOrigin":
		return deny401
	case "StreamTicket":
		if rt.Auth == auth.Stream {
			return pass
		}
		return deny401 // a ticket is accepted on stream routes only
	case "RemovedWorkspaceToken":
		if strings.HasPrefix(rt.Pattern, "/registry/") {
			return deny410
		}
		return deny401
	case "AdminBearer", "SessionMatchingOrigin", "SessionAllowedOrigin":
		if adminOK {
			return pass
		}
		return deny403
	case "SessionWithoutOrigin", "SessionForeignOrigin":
		if !safe {
			return deny403 // CSRF guard
		}
		if adminOK {
			return pass
		}
		return deny403
	case "OwnWorkspaceToken":
		if rt.Auth == auth.Admin {
			return deny403
		}
		return pass
	case "OtherWorkspaceToken":
		switch rt.Auth {
		case auth.Admin:
			return deny403
		case auth.AnyWorkspace, auth.AdminOrWorkspace, auth.Stream:
			return pass
		}
		if hasID {
			return deny403
		}
		return pass // the token names its own workspace (register, heartbeat)
	}
	panic("unknown credential " + cred)
}

// TestAuthMatrix is generated from the route table: every route is called
// with every kind of credential, and the auth outcome must follow from the
// route's class alone. A new route cannot escape it.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	shared := setup(t) // for read-only routes
	for _, rt := range shared.server.Routes() {
		for _, cred := range credentials {
			name := strings.NewReplacer("/", "_", "{", "", "}", "").Replace(rt.Method+rt.Pattern) + "/" + cred.name
			t.Run(name, func(t *testing.T) {
				b := shared
				if rt.Method != http.MethodGet {
					t.Parallel()
					b = setup(t) // a write may change the cast (delete, revoke, pause)
				}
				path := strings.NewReplacer("{id}", b.ownID, "{tokenId}", "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70",
					"{sid}", "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f71", "{rid}", "0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f72").Replace(rt.Pattern)
				// Streams run until the client goes: give them a short life.
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				req := httptest.NewRequest(rt.Method, path, strings.NewReader("{}")).WithContext(ctx)
				req.Host = "example.com"
				n := clientSeq.Add(1)
				req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:4000", n>>16&255, n>>8&255, n&255)
				for _, o := range cred.opts(b) {
					o(req)
				}
				w := httptest.NewRecorder()
				b.handler.ServeHTTP(w, req)
				want := expected(rt, cred.name)
				require.Equal(t, want, observed(w.Code), "%s %s as %s → %d %s", rt.Method, path, cred.name, w.Code, w.Body.String())
				if want == deny401 {
					require.JSONEq(t, `{"error":"missing or invalid credentials"}`, w.Body.String(), "failures look alike")
				}
			})
		}
	}
}

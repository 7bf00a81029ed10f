// Package api is the HTTP transport: the one route table of agentplane (method,
// path, auth class, handler) from which the mux is built, and the handlers
// that translate HTTP to domain calls.
//
// Handlers validate and translate; rules live in the domain packages and SQL
// lives in the store. A route cannot exist without a valid auth class: Build
// refuses it.
package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/metrics"
	"github.com/go-chi/chi/v5"
)

// Route is one row of the route table.
type Route struct {
	// Method is the HTTP method.
	Method string
	// Pattern is the path with {name} parameters; {id} is the workspace id
	// that own-workspace classes compare with the caller's token.
	Pattern string
	// Auth is who may call it.
	Auth auth.Class
	// Handler serves it.
	Handler http.HandlerFunc
}

// BuildOptions are what the mux needs besides the routes.
type BuildOptions struct {
	Authn   auth.Authenticator
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Audit and ClientIP, when set, record identity mismatches.
	Audit    *audit.Recorder
	ClientIP *auth.ClientIP
	// Tickets resolves ?ticket= on stream routes; nil disables tickets.
	Tickets interface {
		AuthenticateTicket(r *http.Request) (*auth.Principal, error)
	}
}

// Build makes the mux from routes. It fails on a route without a valid auth
// class, without a handler, or registered twice.
func Build(routes []Route, o BuildOptions) (http.Handler, error) {
	if o.Authn == nil {
		return nil, fmt.Errorf("build routes: no authenticator")
	}
	r := chi.NewRouter()
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Pattern
		switch {
		case !rt.Auth.Valid():
			return nil, fmt.Errorf("route %s: auth class %q is not one of %v", key, rt.Auth, auth.Classes())
		case rt.Handler == nil:
			return nil, fmt.Errorf("route %s: no handler", key)
		case seen[key]:
			return nil, fmt.Errorf("route %s: registered twice", key)
		}
		seen[key] = true
		r.Method(rt.Method, rt.Pattern, instrument(rt, o, guard(rt, o)))
	}
	r.NotFound(func(w http.ResponseWriter, req *http.Request) {
		httpapi.WriteError(w, req, nil, fault.NotFound("route "+req.Method+" "+req.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		httpapi.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + req.Method + " not allowed on " + req.URL.Path})
	})
	return r, nil
}

// guard authenticates the request and applies the route's auth class before
// the handler runs. Public and signed-webhook routes skip credential checks
// (a webhook handler verifies its platform's signature itself). A removed
// workspace's token is 410 on the registry routes, so that its agent knows to
// stop, and 401 elsewhere. An X-Workspace-ID header naming another workspace
// than the token's is refused on every route.
func guard(rt Route, o BuildOptions) http.HandlerFunc {
	next := rt.Handler
	if rt.Auth == auth.Public || rt.Auth == auth.SignedWebhook {
		return next
	}
	registryRoute := strings.HasPrefix(rt.Pattern, "/registry/")
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := o.Authn.Authenticate(r)
		if err == nil && p == nil && rt.Auth == auth.Stream && o.Tickets != nil {
			p, err = o.Tickets.AuthenticateTicket(r)
		}
		if f, ok := fault.As(err); ok && f.Code == auth.CodeWorkspaceRemoved {
			if registryRoute {
				err = &fault.Error{Kind: fault.KindGone, Code: auth.CodeWorkspaceRemoved, Msg: "this workspace was removed; stop this agent"}
			} else {
				err = fault.Unauthorized() // elsewhere it looks like any other failure
			}
		}
		if err == nil {
			err = auth.Check(rt.Auth, p, r)
		}
		if err == nil {
			err = checkHeaderIdentity(r, p, o)
		}
		if err != nil {
			httpapi.WriteError(w, r, o.Log, err)
			return
		}
		next(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}
}

func checkHeaderIdentity(r *http.Request, p *auth.Principal, o BuildOptions) error {
	claimed := r.Header.Get("X-Workspace-ID")
	if p == nil || p.Kind != auth.KindWorkspace || claimed == "" || claimed == p.WorkspaceID {
		return nil
	}
	if o.Audit != nil {
		ip := r.RemoteAddr
		if o.ClientIP != nil {
			ip = o.ClientIP.Of(r)
		}
		if err := o.Audit.Record(r.Context(), audit.Event{
			Kind: audit.KindWorkspaceMismatch, WorkspaceID: p.WorkspaceID, Actor: p.Actor(), ClientIP: ip,
			Detail: map[string]string{"field": "X-Workspace-ID", "claimed": claimed, "path": r.URL.Path},
		}); err != nil && o.Log != nil {
			o.Log.Warn("record security event", "err", err)
		}
	}
	return &fault.Error{Kind: fault.KindForbidden, Field: "X-Workspace-ID", Msg: "does not match the workspace of the token"}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets streaming handlers (SSE, A2A streams) flush through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument records metrics per route pattern (bounded cardinality) and turns
// a handler panic into a logged 500 instead of a dropped connection.
func instrument(rt Route, o BuildOptions, next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				if o.Log != nil {
					o.Log.Error("handler panicked", "route", rt.Pattern, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				}
				if rec.status == 0 {
					httpapi.WriteJSON(rec, http.StatusInternalServerError, map[string]string{"error": "internal error"})
				}
			}
			if o.Metrics != nil {
				code := rec.status
				if code == 0 {
					code = http.StatusOK
				}
				o.Metrics.HTTPRequests.WithLabelValues(rt.Pattern, rt.Method, strconv.Itoa(code)).Inc()
				o.Metrics.HTTPDuration.WithLabelValues(rt.Pattern, rt.Method).Observe(time.Since(start).Seconds())
			}
		}()
		next.ServeHTTP(rec, r)
	}
}

// Package auth decides who a request comes from (the Principal) and whether
// that principal may use a route of a given auth Class. The classes are data:
// the route table names one per route, and the auth-matrix test is generated
// from them.
//
// It owns credential checks and the class rules. It must never fail open: a
// route without a class cannot be built, a missing authenticator denies, and
// an invalid bearer is 401 whatever else the request carries.
package auth

import (
	"context"
	"net/http"
	"strings"

	"github.com/agentplane/agentplane/internal/fault"
)

// Class is the auth requirement of a route.
type Class string

// The auth classes of SPEC §5–§11.
const (
	// Public routes need no credentials (health probes, login, static assets).
	Public Class = "public"
	// Admin routes need an admin bearer or an admin canvas session.
	Admin Class = "admin"
	// OwnWorkspace routes need a workspace token; when the path has {id} it
	// must be the token's workspace.
	OwnWorkspace Class = "own_workspace"
	// AnyWorkspace routes need any valid workspace token.
	AnyWorkspace Class = "any_workspace"
	// AdminOrOwn routes accept an admin, or the workspace named by {id}.
	AdminOrOwn Class = "admin_or_own"
	// AdminOrWorkspace routes accept an admin or any workspace token.
	AdminOrWorkspace Class = "admin_or_workspace"
	// SignedWebhook routes carry no platform credentials; the handler verifies
	// the sender's signature over the raw body instead.
	SignedWebhook Class = "signed_webhook"
	// Stream routes (WebSocket, SSE) accept what AdminOrWorkspace accepts,
	// and also a single-use ?ticket= from POST /auth/ws-ticket, since
	// browsers cannot set headers on a WebSocket request.
	Stream Class = "stream"
)

// Classes lists every class, for tests that enumerate them.
func Classes() []Class {
	return []Class{Public, Admin, OwnWorkspace, AnyWorkspace, AdminOrOwn, AdminOrWorkspace, SignedWebhook, Stream}
}

// Valid reports whether c is a defined class.
func (c Class) Valid() bool {
	for _, k := range Classes() {
		if c == k {
			return true
		}
	}
	return false
}

// Kind is what sort of caller a principal is.
type Kind string

// Principal kinds.
const (
	KindAdmin     Kind = "admin"
	KindWorkspace Kind = "workspace"
)

// Principal is an authenticated caller.
type Principal struct {
	Kind Kind
	// Name is the admin token's name (admins) or empty.
	Name string
	// WorkspaceID is set for workspace callers.
	WorkspaceID string
	// TokenID identifies the credential used, for audit.
	TokenID string
	// ViaSession is true when an admin came through a canvas session cookie.
	ViaSession bool
}

// Actor is how events and audit rows name the principal.
func (p *Principal) Actor() string {
	if p == nil {
		return "anonymous"
	}
	switch p.Kind {
	case KindAdmin:
		if p.Name != "" {
			return "admin:" + p.Name
		}
		return "admin"
	case KindWorkspace:
		return "workspace:" + p.WorkspaceID
	}
	return "unknown"
}

type ctxKey struct{}

// WithPrincipal stores p in ctx.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the request's principal, nil when unauthenticated.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// Authenticator resolves a request's credentials. It returns (nil, nil) when
// the request carries none, and a fault (401) when they are invalid.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

// BearerToken returns the token of an "Authorization: Bearer …" header and
// whether one was present (even if empty or malformed).
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}

// Check decides whether p may use a route of class c on request r. It returns
// nil, a 401 fault (no or wrong kind of credentials) or a 403 fault.
func Check(c Class, p *Principal, r *http.Request) error {
	switch c {
	case Public, SignedWebhook:
		return nil
	}
	if p == nil {
		return fault.Unauthorized()
	}
	isAdmin := p.Kind == KindAdmin
	isWS := p.Kind == KindWorkspace
	ownPath := func() bool {
		id := r.PathValue("id")
		return id == "" || id == p.WorkspaceID
	}
	switch c {
	case Admin:
		if isAdmin {
			return nil
		}
		return fault.Forbidden("admin credentials required")
	case OwnWorkspace:
		if isWS && ownPath() {
			return nil
		}
		if isWS {
			return fault.Forbidden("workspace token does not belong to this workspace")
		}
		return fault.Forbidden("a workspace token is required")
	case AnyWorkspace:
		if isWS {
			return nil
		}
		return fault.Forbidden("a workspace token is required")
	case AdminOrOwn:
		if isAdmin || (isWS && ownPath()) {
			return nil
		}
		return fault.Forbidden("workspace token does not belong to this workspace")
	case AdminOrWorkspace, Stream:
		if isAdmin || isWS {
			return nil
		}
		return fault.Forbidden("not allowed")
	}
	// Unknown class: deny. Build refuses such routes, so this is a backstop.
	return fault.Forbidden("route has no valid auth class")
}

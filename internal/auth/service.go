package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/google/uuid"
)

// Session and rate-limit settings (SPEC §9).
const (
	SessionCookie   = "agentplane_session"
	SessionTTL      = 12 * time.Hour
	sessionSlideGap = 5 * time.Minute // extend at most this often
	touchInterval   = time.Minute     // last_used_at precision
	MaxFailures     = 20
	FailureWindow   = time.Minute
)

// CodeWorkspaceRemoved marks the 401 of a removed workspace's token; registry
// routes answer it with 410 so that the agent knows to stop.
const CodeWorkspaceRemoved = "workspace_removed"

// Service authenticates requests against stored credentials.
type Service struct {
	store          store.Store
	clock          clock.Clock
	log            *slog.Logger
	audit          *audit.Recorder
	limiter        *Limiter
	ips            *ClientIP
	allowedOrigins map[string]bool
}

// Options configure the service.
type Options struct {
	Store          store.Store
	Clock          clock.Clock
	Log            *slog.Logger
	Audit          *audit.Recorder
	ClientIP       *ClientIP
	AllowedOrigins []string
}

// NewService returns the stored-credential authenticator.
func NewService(o Options) *Service {
	allowed := map[string]bool{}
	for _, origin := range o.AllowedOrigins {
		allowed[strings.ToLower(origin)] = true
	}
	if o.ClientIP == nil {
		o.ClientIP = NewClientIP(nil)
	}
	return &Service{
		store: o.Store, clock: o.Clock, log: o.Log, audit: o.Audit, ips: o.ClientIP,
		limiter: NewLimiter(o.Clock, MaxFailures, FailureWindow), allowedOrigins: allowed,
	}
}

// ClientIP returns the resolver of client addresses.
func (s *Service) ClientIP() *ClientIP { return s.ips }

// Authenticate implements Authenticator. A request with a bearer is judged by
// the bearer alone (CanvasOrBearer): an invalid one is 401 whatever cookie or
// Origin comes with it. Only a request without a bearer falls to the session
// cookie, whose state-changing requests must come from an allowed Origin.
func (s *Service) Authenticate(r *http.Request) (*Principal, error) {
	client := LimitKey(s.ips.Of(r))
	tok, hasBearer := BearerToken(r)
	cookie, cookieErr := r.Cookie(SessionCookie)
	hasCookie := cookieErr == nil && cookie.Value != ""
	if !hasBearer && !hasCookie {
		return nil, nil
	}
	if blocked, wait := s.limiter.Blocked(client); blocked {
		return nil, &fault.Error{Kind: fault.KindRateLimited, Msg: "too many failed authentication attempts; retry later", RetryAfter: wait}
	}
	if hasBearer {
		return s.bearer(r, tok, client)
	}
	return s.session(r, cookie.Value, client)
}

func (s *Service) fail(r *http.Request, client, presented string) error {
	s.limiter.Fail(client)
	// Only the public prefix of something shaped like an issued token is
	// recorded; any other value may be a mistyped secret (--admin-token).
	prefix := fmt.Sprintf("(not an issued token, %d bytes)", len(presented))
	if (strings.HasPrefix(presented, AdminPrefix) || strings.HasPrefix(presented, WorkspacePrefix)) && len(presented) > PrefixLen {
		prefix = presented[:PrefixLen]
	}
	if s.audit != nil {
		if err := s.audit.Record(r.Context(), audit.Event{
			Kind: audit.KindInvalidToken, ClientIP: client,
			Detail: map[string]string{"prefix": prefix, "method": r.Method, "path": r.URL.Path},
		}); err != nil {
			s.log.Warn("record invalid token", "err", err)
		}
	}
	return fault.Unauthorized()
}

func (s *Service) bearer(r *http.Request, tok, client string) (*Principal, error) {
	if !plausible(tok) {
		return nil, s.fail(r, client, tok)
	}
	l, err := s.store.TokenByHash(r.Context(), HashToken(tok))
	if errors.Is(err, store.ErrNotFound) {
		return nil, s.fail(r, client, tok)
	}
	if err != nil {
		return nil, err // store outage: 503, not a failed login
	}
	if !l.RevokedAt.IsZero() && l.WorkspaceStatus == store.StatusRemoved {
		s.limiter.Fail(client)
		return nil, &fault.Error{Kind: fault.KindUnauthorized, Code: CodeWorkspaceRemoved, Msg: "missing or invalid credentials"}
	}
	if !l.RevokedAt.IsZero() || l.WorkspaceStatus == store.StatusRemoved {
		return nil, s.fail(r, client, tok)
	}
	s.touch(r.Context(), l.Token)
	if l.Kind == store.TokenAdmin {
		return &Principal{Kind: KindAdmin, Name: l.Name, TokenID: l.ID}, nil
	}
	return &Principal{Kind: KindWorkspace, WorkspaceID: l.WorkspaceID, TokenID: l.ID}, nil
}

// touch records last use at most once per touchInterval; a failure only logs.
// The process clock decides whether a write is due, so the common case (used
// within the last minute) costs no database round trip; the write itself
// uses store time and is conditional, so clock skew cannot double it.
func (s *Service) touch(ctx context.Context, t store.Token) {
	if s.clock.Since(t.LastUsedAt) < touchInterval {
		return
	}
	now, err := s.store.Now(ctx)
	if err != nil {
		return
	}
	if err := s.store.TouchToken(ctx, t.ID, now, now.Add(-touchInterval)); err != nil {
		s.log.Warn("record token use", "token_id", t.ID, "err", err)
	}
}

func (s *Service) session(r *http.Request, value, client string) (*Principal, error) {
	l, err := s.store.SessionByHash(r.Context(), HashToken(value))
	if errors.Is(err, store.ErrNotFound) {
		s.limiter.Fail(client)
		return nil, fault.Unauthorized()
	}
	if err != nil {
		return nil, err
	}
	now, err := s.store.Now(r.Context())
	if err != nil {
		return nil, err
	}
	if l.TokenRevoked || !now.Before(l.ExpiresAt) {
		s.limiter.Fail(client)
		return nil, fault.Unauthorized()
	}
	if err := s.checkOrigin(r, client); err != nil {
		return nil, err
	}
	if l.ExpiresAt.Sub(now) < SessionTTL-sessionSlideGap {
		if err := s.store.ExtendSession(r.Context(), l.ID, now.Add(SessionTTL), now); err != nil {
			s.log.Warn("extend session", "err", err)
		}
	}
	return &Principal{Kind: KindAdmin, Name: l.TokenName, TokenID: l.TokenID, ViaSession: true}, nil
}

// checkOrigin is the CSRF guard for cookie-authenticated requests: a request
// that changes state, and any WebSocket upgrade, must carry an Origin equal to
// the server's own or listed in --allowed-origins.
func (s *Service) checkOrigin(r *http.Request, client string) error {
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
	upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	if safe && !upgrade {
		return nil
	}
	origin := strings.ToLower(r.Header.Get("Origin"))
	if origin != "" && (origin == s.ownOrigin(r) || s.allowedOrigins[origin]) {
		return nil
	}
	if s.audit != nil {
		_ = s.audit.Record(r.Context(), audit.Event{Kind: audit.KindCrossOrigin, ClientIP: client,
			Detail: map[string]string{"origin": r.Header.Get("Origin"), "method": r.Method, "path": r.URL.Path}})
	}
	return fault.Forbidden("cross-origin request refused: the Origin header must be this server's or one of --allowed-origins")
}

func (s *Service) ownOrigin(r *http.Request) string {
	scheme := "http"
	if s.ips.TLS(r) {
		scheme = "https"
	}
	return strings.ToLower(scheme + "://" + r.Host)
}

// Login exchanges an admin token for a session; it returns the cookie value.
func (s *Service) Login(ctx context.Context, r *http.Request, token string) (string, time.Time, error) {
	client := LimitKey(s.ips.Of(r))
	if blocked, wait := s.limiter.Blocked(client); blocked {
		return "", time.Time{}, &fault.Error{Kind: fault.KindRateLimited, Msg: "too many failed authentication attempts; retry later", RetryAfter: wait}
	}
	if !plausible(token) {
		return "", time.Time{}, s.fail(r, client, token)
	}
	l, err := s.store.TokenByHash(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (!l.RevokedAt.IsZero() || l.Kind != store.TokenAdmin)) {
		return "", time.Time{}, s.fail(r, client, token)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	value := base64.RawURLEncoding.EncodeToString(raw[:])
	var expires time.Time
	err = s.store.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		expires = now.Add(SessionTTL)
		return tx.InsertSession(ctx, store.Session{
			ID: uuid.Must(uuid.NewV7()).String(), Hash: HashToken(value), TokenID: l.ID,
			CreatedAt: now, ExpiresAt: expires, LastSeenAt: now,
		})
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return value, expires, nil
}

// Logout deletes the request's session, if any.
func (s *Service) Logout(ctx context.Context, r *http.Request) error {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	return s.store.DeleteSession(ctx, HashToken(c.Value))
}

// SessionCookieFor builds the cookie for value (empty value clears it).
func (s *Service) SessionCookieFor(r *http.Request, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.ips.TLS(r), Expires: expires,
	}
	if value == "" {
		c.MaxAge = -1
		c.Expires = time.Unix(0, 0)
	}
	return c
}

// EnsureAdminTokens runs at start. With flagToken it makes sure a token with
// that value exists (created if absent; a revoked one is not revived). Without
// it, if no active admin token exists, it creates one named "bootstrap" and
// returns its value — only on the replica whose insert won.
func (s *Service) EnsureAdminTokens(ctx context.Context, flagToken string) (bootstrap string, err error) {
	if flagToken != "" {
		hash := HashToken(flagToken)
		err := s.store.InTx(ctx, func(tx store.Tx) error {
			l, err := tx.TokenByHash(ctx, hash)
			if err == nil {
				if !l.RevokedAt.IsZero() {
					s.log.Error("the --admin-token value was revoked and stays revoked; pass another value")
				}
				return nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			now, err := tx.Now(ctx)
			if err != nil {
				return err
			}
			_, err = tx.InsertToken(ctx, store.Token{
				ID: uuid.Must(uuid.NewV7()).String(), Kind: store.TokenAdmin, Name: "admin-token-flag-" + fmt.Sprintf("%x", hash[:4]),
				Hash: hash, Prefix: "(--admin-token)", CreatedAt: now, CreatedBy: "system:--admin-token",
			})
			return err
		})
		return "", err
	}
	var plain string
	err = s.store.InTx(ctx, func(tx store.Tx) error {
		n, err := tx.CountActiveAdminTokens(ctx)
		if err != nil || n > 0 {
			return err
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		p, hash, display := NewToken(AdminPrefix)
		ok, err := tx.InsertToken(ctx, store.Token{
			ID: uuid.Must(uuid.NewV7()).String(), Kind: store.TokenAdmin, Name: "bootstrap",
			Hash: hash, Prefix: display, CreatedAt: now, CreatedBy: "system:bootstrap",
		})
		if ok {
			plain = p
		}
		return err
	})
	return plain, err
}

// MintAdminToken creates a named admin token and returns its value once.
func (s *Service) MintAdminToken(ctx context.Context, name, actor string) (string, store.Token, error) {
	plain, hash, display := NewToken(AdminPrefix)
	var tok store.Token
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		tok = store.Token{ID: uuid.Must(uuid.NewV7()).String(), Kind: store.TokenAdmin, Name: name, Hash: hash, Prefix: display, CreatedAt: now, CreatedBy: actor}
		ok, err := tx.InsertToken(ctx, tok)
		if err != nil {
			return err
		}
		if !ok {
			return fault.Conflict("duplicate_name", "an active admin token named %s already exists", audit.Quote(name))
		}
		return nil
	})
	return plain, tok, err
}

// RevokeAdminToken revokes an admin token, refusing to revoke the last one
// (which would lock every operator out).
func (s *Service) RevokeAdminToken(ctx context.Context, id string) error {
	return s.store.InTx(ctx, func(tx store.Tx) error {
		n, err := tx.CountActiveAdminTokens(ctx)
		if err != nil {
			return err
		}
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		if err := tx.RevokeToken(ctx, id, store.TokenAdmin, "", now); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fault.NotFound("active admin token " + id)
			}
			return err
		}
		if n <= 1 {
			return fault.Conflict("last_admin_token", "refusing to revoke the last active admin token; mint another first")
		}
		return nil
	})
}

// TicketTTL is how long a stream ticket stays valid (SPEC §8.3).
const TicketTTL = 60 * time.Second

// IssueTicket returns a single-use ticket standing for p for TicketTTL.
func (s *Service) IssueTicket(ctx context.Context, p *Principal) (string, time.Time, error) {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	value := "apt_" + base64.RawURLEncoding.EncodeToString(raw[:])
	var expires time.Time
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		expires = now.Add(TicketTTL)
		return tx.InsertTicket(ctx, store.Ticket{
			Hash: HashToken(value), PrincipalKind: string(p.Kind), PrincipalName: p.Name,
			WorkspaceID: p.WorkspaceID, TokenID: p.TokenID, ExpiresAt: expires,
		})
	})
	return value, expires, err
}

// AuthenticateTicket resolves ?ticket= of a stream request, consuming it.
// It returns (nil, nil) when the request carries no ticket.
func (s *Service) AuthenticateTicket(r *http.Request) (*Principal, error) {
	value := r.URL.Query().Get("ticket")
	if value == "" {
		return nil, nil
	}
	client := LimitKey(s.ips.Of(r))
	if blocked, wait := s.limiter.Blocked(client); blocked {
		return nil, &fault.Error{Kind: fault.KindRateLimited, Msg: "too many failed authentication attempts; retry later", RetryAfter: wait}
	}
	now, err := s.store.Now(r.Context())
	if err != nil {
		return nil, err
	}
	tk, err := s.store.ConsumeTicket(r.Context(), HashToken(value), now)
	if errors.Is(err, store.ErrNotFound) {
		s.limiter.Fail(client)
		return nil, fault.Unauthorized()
	}
	if err != nil {
		return nil, err
	}
	return &Principal{Kind: Kind(tk.PrincipalKind), Name: tk.PrincipalName, WorkspaceID: tk.WorkspaceID, TokenID: tk.TokenID}, nil
}

package api

import (
	"net/http"
	"strings"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/httpapi"
	"github.com/agentplane/agentplane/internal/store"
)

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Token string `json:"token"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.Token) == "" {
		s.fail(w, r, fault.Invalid("token", "is required"))
		return
	}
	value, expires, err := s.d.Auth.Login(r.Context(), r, body.Token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, s.d.Auth.SessionCookieFor(r, value, expires))
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "logged_in", "expires_at": expires})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.d.Auth.Logout(r.Context(), r); err != nil {
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, s.d.Auth.SessionCookieFor(r, "", s.zeroTime()))
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "logged_out"})
}

func (s *Server) listAdminTokens(w http.ResponseWriter, r *http.Request) {
	limit, after, err := pageAfter(r, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	toks, err := s.d.Store.ListTokens(r.Context(), store.TokenFilter{Kind: store.TokenAdmin, AfterID: after, Limit: limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, toks, toTokenJSON)
}

func (s *Server) mintAdminToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
	}
	if !s.decode(w, r, &body) {
		return
	}
	name := strings.TrimSpace(body.Name)
	if name == "" || len(name) > 100 || strings.ContainsAny(name, "\r\n\t\x00") {
		s.fail(w, r, fault.Invalid("name", "must be 1 to 100 characters on one line"))
		return
	}
	plain, tok, err := s.d.Auth.MintAdminToken(r.Context(), name, auth.FromContext(r.Context()).Actor())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, map[string]any{"id": tok.ID, "name": tok.Name, "token": plain, "prefix": tok.Prefix})
}

func (s *Server) revokeAdminToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "tokenId")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.d.Auth.RevokeAdminToken(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "revoked", "id": id})
}

package api

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/fault"
	"github.com/agentplane/agentplane/internal/gateway"
)

// a2a is POST /workspaces/{id}/a2a: admins and the canvas reach any
// workspace, a workspace token reaches the workspaces the hierarchy allows
// (checked by the gateway, which answers in JSON-RPC).
func (s *Server) a2a(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	timeout := gateway.DefaultTimeout
	if v := r.Header.Get("X-Timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || time.Duration(n)*time.Second > gateway.MaxTimeout {
			s.fail(w, r, fault.Invalid("X-Timeout", "must be whole seconds between 1 and %d", int(gateway.MaxTimeout.Seconds())))
			return
		}
		timeout = time.Duration(n) * time.Second
	}
	queue := gateway.DefaultQueueTimeout
	if v := r.Header.Get("X-Queue-Timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || time.Duration(n)*time.Second > gateway.MaxQueueTimeout {
			s.fail(w, r, fault.Invalid("X-Queue-Timeout", "must be whole seconds between 0 and %d", int(gateway.MaxQueueTimeout.Seconds())))
			return
		}
		queue = time.Duration(n) * time.Second
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.d.MaxBody))
	if err != nil {
		s.fail(w, r, &fault.Error{Kind: fault.KindTooLarge, Field: "body", Msg: "request body exceeds " + strconv.FormatInt(s.d.MaxBody, 10) + " bytes"})
		return
	}
	s.d.Gateway.Forward(r.Context(), w, gateway.Call{
		Caller: auth.FromContext(r.Context()), WorkspaceID: id, Body: body,
		A2AVersion: r.Header.Get("A2A-Version"), Timeout: timeout, QueueTimeout: queue,
	})
}

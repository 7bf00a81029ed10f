package netguard

import (
	"net/http"
	"time"
)

// Timeouts and limits of the transport built by Transport.
const (
	tlsHandshakeTimeout   = 10 * time.Second
	idleConnTimeout       = 90 * time.Second
	expectContinueTimeout = 1 * time.Second
	maxIdleConns          = 1024
	maxIdleConnsPerHost   = 256
	maxResponseHeaderSize = 1 << 20
)

// Transport returns a new *http.Transport that opens every connection through
// DialContext. Its Proxy is nil, so HTTP_PROXY and friends are never used;
// DialTLSContext is unset, so TLS runs over the guarded connection; HTTP/2 is
// negotiated over TLS (ForceAttemptHTTP2, needed because DialContext is
// custom). It sets the TLS handshake, idle and Expect: 100-continue timeouts
// and caps response headers at 1 MiB; it sets no ResponseHeaderTimeout, since
// callers bound requests with contexts. The caller owns the transport and may
// tune it, but must not set Proxy, DialContext or DialTLSContext, which would
// bypass the guard.
func (g *Guard) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           g.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		IdleConnTimeout:       idleConnTimeout,
		ExpectContinueTimeout: expectContinueTimeout,
		MaxIdleConns:          maxIdleConns,
		// Several agents often share one host (a team of agents behind one
		// server): keep enough idle connections per host that bursts of
		// calls reuse them instead of opening (and TIME_WAITing) new ones.
		MaxIdleConnsPerHost:    maxIdleConnsPerHost,
		MaxResponseHeaderBytes: maxResponseHeaderSize,
	}
}

// Client returns an *http.Client whose connections go through DialContext and
// which never follows redirects: a 3xx response is returned to the caller as
// is, with its body, and the Location target is never requested. timeout is
// the client's overall request timeout; zero or less means none (callers
// usually bound requests with contexts). All clients of one Guard share one
// transport and so one connection pool.
func (g *Guard) Client(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: g.shared,
		Timeout:   max(timeout, 0),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

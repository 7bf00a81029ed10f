package netguard_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentplane/agentplane/internal/netguard"
)

// countingServer is an httptest server on 127.0.0.1 that counts requests per
// path and redirects /redirect to /target.
type countingServer struct {
	*httptest.Server
	all, target atomic.Int64
}

func newCountingServer(t *testing.T) *countingServer {
	t.Helper()
	s := &countingServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello agent")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/target", http.StatusFound)
	})
	mux.HandleFunc("/redirect-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/target", func(w http.ResponseWriter, _ *http.Request) {
		s.target.Add(1)
		_, _ = io.WriteString(w, "target")
	})
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.all.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// get performs a GET with a bounded context.
func get(t *testing.T, c *http.Client, rawURL string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	if resp != nil {
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	return resp, err
}

func TestClient(t *testing.T) {
	t.Parallel()

	t.Run("RefusesLoopbackByDefault", func(t *testing.T) {
		t.Parallel()
		srv := newCountingServer(t)
		srv.Start()
		var log refusalLog
		g := netguard.New(netguard.Options{
			Resolver: failingResolver(t),
			Dial:     loopbackOnlyDial(t),
			OnRefuse: log.OnRefuse,
		})
		resp, err := get(t, g.Client(0), srv.URL+"/hello")
		require.Nil(t, resp)
		require.ErrorIs(t, err, netguard.ErrRefused)
		require.Zero(t, srv.all.Load(), "the server saw no request")
		require.Equal(t, []refusal{{Host: "127.0.0.1", IP: "127.0.0.1", Reason: "loopback"}}, log.Seen())
	})

	t.Run("RefusesNameResolvingToLoopback", func(t *testing.T) {
		t.Parallel()
		srv := newCountingServer(t)
		srv.Start()
		port := mustURL(t, srv.URL).Port()
		g := netguard.New(netguard.Options{Resolver: staticResolver("127.0.0.1"), Dial: loopbackOnlyDial(t)})
		_, err := get(t, g.Client(0), "http://agent.example.com:"+port+"/hello")
		require.ErrorIs(t, err, netguard.ErrRefused)
		require.ErrorContains(t, err, `"agent.example.com"`)
		require.Zero(t, srv.all.Load())
	})

	t.Run("AllowPrivateConnects", func(t *testing.T) {
		t.Parallel()
		srv := newCountingServer(t)
		srv.Start()
		port := mustURL(t, srv.URL).Port()
		res := staticResolver("127.0.0.1")
		g := netguard.New(netguard.Options{AllowPrivate: true, Resolver: res, Dial: loopbackOnlyDial(t)})
		for _, u := range []string{srv.URL + "/hello", "http://agent.example.com:" + port + "/hello"} {
			resp, err := get(t, g.Client(5*time.Second), u)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, "hello agent", string(body))
		}
		require.Equal(t, int64(2), srv.all.Load())
		require.Equal(t, []string{"ip agent.example.com"}, res.Calls())
	})

	t.Run("RedirectNotFollowed", func(t *testing.T) {
		t.Parallel()
		srv := newCountingServer(t)
		srv.Start()
		g := netguard.New(netguard.Options{AllowPrivate: true, Resolver: failingResolver(t), Dial: loopbackOnlyDial(t)})
		resp, err := get(t, g.Client(0), srv.URL+"/redirect")
		require.NoError(t, err)
		require.Equal(t, http.StatusFound, resp.StatusCode)
		require.Equal(t, "/target", resp.Header.Get("Location"))
		require.Equal(t, "/redirect", resp.Request.URL.Path)
		require.Zero(t, srv.target.Load(), "the redirect target was never requested")
		require.Equal(t, int64(1), srv.all.Load())
	})

	t.Run("RedirectToMetadataNotFollowed", func(t *testing.T) {
		t.Parallel()
		srv := newCountingServer(t)
		srv.Start()
		// loopbackOnlyDial fails the test if anything tries 169.254.169.254.
		g := netguard.New(netguard.Options{AllowPrivate: true, Resolver: failingResolver(t), Dial: loopbackOnlyDial(t)})
		resp, err := get(t, g.Client(0), srv.URL+"/redirect-metadata")
		require.NoError(t, err)
		require.Equal(t, http.StatusFound, resp.StatusCode)
		require.Equal(t, "http://169.254.169.254/latest/meta-data/", resp.Header.Get("Location"))
	})

	t.Run("HTTP2OverTLS", func(t *testing.T) {
		t.Parallel()
		srv := newCountingServer(t)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		g := netguard.New(netguard.Options{AllowPrivate: true, Resolver: failingResolver(t), Dial: loopbackOnlyDial(t)})
		tr := g.Transport()
		t.Cleanup(tr.CloseIdleConnections)
		roots := x509.NewCertPool()
		roots.AddCert(srv.Certificate())
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		resp, err := get(t, &http.Client{Transport: tr}, srv.URL+"/hello")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, 2, resp.ProtoMajor, "HTTP/2 negotiated over TLS")
	})

	t.Run("ClientSettings", func(t *testing.T) {
		t.Parallel()
		g := netguard.New(netguard.Options{})
		c := g.Client(3 * time.Second)
		require.Equal(t, 3*time.Second, c.Timeout)
		require.Zero(t, g.Client(0).Timeout)
		require.Zero(t, g.Client(-time.Second).Timeout, "a negative timeout means none")
		require.Same(t, c.Transport, g.Client(0).Transport, "clients share one connection pool")
		require.ErrorIs(t, c.CheckRedirect(nil, nil), http.ErrUseLastResponse)
	})

	t.Run("TransportSettings", func(t *testing.T) {
		t.Parallel()
		g := netguard.New(netguard.Options{})
		tr := g.Transport()
		require.Nil(t, tr.Proxy, "environment proxies are never used")
		require.NotNil(t, tr.DialContext)
		require.Nil(t, tr.DialTLSContext, "TLS runs over the guarded connection")
		require.True(t, tr.ForceAttemptHTTP2)
		require.Positive(t, tr.TLSHandshakeTimeout)
		require.Positive(t, tr.IdleConnTimeout)
		require.Zero(t, tr.ResponseHeaderTimeout, "left to the caller's context")
		require.NotSame(t, tr, g.Transport(), "each call returns a transport the caller owns")
	})

	t.Run("TransportDialsThroughGuard", func(t *testing.T) {
		t.Parallel()
		dial := newRecordingDial(t)
		g := netguard.New(netguard.Options{Resolver: staticResolver("169.254.169.254"), Dial: dial.Dial})
		_, err := g.Transport().DialContext(context.Background(), "tcp", "metadata.example:80")
		require.ErrorIs(t, err, netguard.ErrRefused)
		require.Empty(t, dial.Addrs())
	})
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

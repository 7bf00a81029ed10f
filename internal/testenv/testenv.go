// Package testenv gives tests the external services they need (PostgreSQL,
// Redis, Chromium) from the environment. When one is missing a test skips —
// unless CI=true, where a missing service is a failure, so that CI can never
// pass by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURLEnv names the variable holding a PostgreSQL URL for tests.
const PostgresURLEnv = "AGENTPLANE_TEST_DATABASE_URL"

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Require returns the value of env, skipping the test when it is unset — or
// failing it under CI.
func Require(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if InCI() {
			t.Fatalf("%s is required under CI=true but %s is not set", what, env)
		}
		t.Skipf("%s not available: set %s to run this test", what, env)
	}
	return v
}

// PostgresURL returns the test database URL (see PostgresURLEnv).
func PostgresURL(t testing.TB) string {
	t.Helper()
	return Require(t, PostgresURLEnv, "PostgreSQL")
}

// PostgresSchema creates a fresh schema for one test and returns a URL whose
// connections use it (search_path), so parallel tests never see each other's
// rows. The session time zone is set to Australia/Lord_Howe — a half-hour DST
// zone — so that code relying on the session zone fails loudly. The schema is
// dropped when the test ends.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := PostgresURL(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to test PostgreSQL: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresURLEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("timezone", "Australia/Lord_Howe")
	u.RawQuery = q.Encode()
	return u.String()
}

// RedisURLEnv names the variable holding a Redis URL for tests.
const RedisURLEnv = "AGENTPLANE_TEST_REDIS_URL"

// RedisURL returns the test Redis URL (see RedisURLEnv).
func RedisURL(t testing.TB) string {
	t.Helper()
	return Require(t, RedisURLEnv, "Redis")
}

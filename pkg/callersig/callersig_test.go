package callersig

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"message/send"}`)
	now := time.Unix(1_800_000_000, 0)
	h := Sign(secret, "workspace:0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70", body, now)

	got, err := Verify(secret, h, body, now.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, "workspace:0190f5d2-8a4b-7c3e-9f1a-2b3c4d5e6f70", got.ID)
	require.Equal(t, now, got.SignedAt)

	cases := []struct {
		name   string
		secret []byte
		value  string
		body   []byte
		at     time.Time
		want   error
	}{
		{"Missing", secret, "", body, now, ErrMissing},
		{"WrongVersion", secret, strings.Replace(h, "v1", "v2", 1), body, now, ErrMalformed},
		{"Garbage", secret, "v1;caller", body, now, ErrMalformed},
		{"DuplicateField", secret, h + ";caller=admin", body, now, ErrMalformed},
		{"TooOld", secret, h, body, now.Add(MaxSkew + time.Second), ErrExpired},
		{"FromTheFuture", secret, h, body, now.Add(-MaxSkew - time.Second), ErrExpired},
		{"OtherSecret", []byte("another-secret-another-secret-00"), h, body, now, ErrSignature},
		{"TamperedCaller", secret, strings.Replace(h, "workspace:0190", "workspace:0191", 1), body, now, ErrSignature},
		{"TamperedBody", secret, h, append([]byte{' '}, body...), now, ErrBody},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Verify(c.secret, c.value, c.body, c.at)
			require.True(t, errors.Is(err, c.want), "got %v, want %v", err, c.want)
		})
	}
}

func FuzzVerify(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	f.Add(Sign(secret, "admin", []byte("x"), time.Unix(100, 0)), []byte("x"))
	f.Add("v1;caller=a;ts=1;body=b;sig=c", []byte(""))
	f.Add("v1;;;=;", []byte("y"))
	f.Fuzz(func(t *testing.T, value string, body []byte) {
		c, err := Verify(secret, value, body, time.Unix(100, 0))
		if err == nil && c.ID == "" {
			t.Fatal("verified without a caller")
		}
	})
}

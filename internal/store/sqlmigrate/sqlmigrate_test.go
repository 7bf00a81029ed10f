package sqlmigrate

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestLoad(t *testing.T) {
	t.Parallel()

	t.Run("OrdersByVersion", func(t *testing.T) {
		t.Parallel()
		fsys := fstest.MapFS{
			"m/0002_b.sql": {Data: []byte("B")},
			"m/0001_a.sql": {Data: []byte("A")},
			"m/README.md":  {Data: []byte("ignored")},
			"m/0003_c.sql": {Data: []byte("C")},
		}
		ms, err := Load(fsys, "m")
		require.NoError(t, err)
		require.Len(t, ms, 3)
		require.Equal(t, "A", ms[0].SQL)
		require.Equal(t, 3, Latest(ms))
	})

	t.Run("RejectsGap", func(t *testing.T) {
		t.Parallel()
		fsys := fstest.MapFS{"m/0001_a.sql": {}, "m/0003_c.sql": {}}
		_, err := Load(fsys, "m")
		require.ErrorContains(t, err, "expected version 2")
	})

	t.Run("RejectsBadName", func(t *testing.T) {
		t.Parallel()
		_, err := Load(fstest.MapFS{"m/x_a.sql": {}}, "m")
		require.ErrorContains(t, err, "not a positive number")
		_, err = Load(fstest.MapFS{"m/nounderscore.sql": {}}, "m")
		require.ErrorContains(t, err, "NNNN_description.sql")
	})
}

package cron

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlaceholder(t *testing.T) { require.True(t, true) }

//go:build !unix

package agent

import "os/exec"

// setProcessGroup keeps exec's default: cancellation kills the shell only.
func setProcessGroup(cmd *exec.Cmd) {}

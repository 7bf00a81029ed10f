//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the command in its own process group and kills the
// whole group on cancellation, so that children of the shell (a pipeline, a
// sleep) die with it instead of holding its output open.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

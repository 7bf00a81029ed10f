// Package buildinfo reports the binary's version, set at link time with
// -ldflags "-X github.com/agentplane/agentplane/internal/buildinfo.Version=v1.2.3"
// and otherwise read from the module's build information.
package buildinfo

import "runtime/debug"

// Version is the release version; empty means "read from build info".
var Version = ""

// String returns the version, the VCS revision when known, and the Go version.
func String() string {
	v, rev, goVersion := Version, "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	out := "agentplane " + v
	if rev != "" {
		out += " (" + rev + ")"
	}
	if goVersion != "" {
		out += " " + goVersion
	}
	return out
}

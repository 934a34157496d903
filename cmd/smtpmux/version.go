package main

import "runtime/debug"

// version is what "smtpmux version", the log and the API report. Release
// and "make build" builds set it with -ldflags "-X main.version=…" (make
// uses git describe); any other build takes it from the build info Go
// records: the module version of "go install …@v1.2.3", or for a build
// inside a git checkout the pseudo-version Go makes of its commit.
var version string

func init() {
	if version == "" {
		version = buildInfoVersion()
	}
}

// buildInfoVersion is the module version, else "devel-<commit>" (with
// "-dirty" for uncommitted changes) where Go stamped only the commit,
// else "devel".
func buildInfoVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	v := "devel-" + rev[:min(12, len(rev))]
	if modified == "true" {
		v += "-dirty"
	}
	return v
}

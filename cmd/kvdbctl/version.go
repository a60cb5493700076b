package main

import (
	"fmt"
	"runtime"
)

// Build information, stamped by `make build` and the Docker image with
// -ldflags "-X main.version=... -X main.commit=... -X main.buildDate=...".
var (
	version   = "dev"
	commit    = "unknown"
	buildDate = "unknown"
)

// versionString is what `kvdbctl --version` prints after the program name.
func versionString() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s)", version, commit, buildDate, runtime.Version())
}

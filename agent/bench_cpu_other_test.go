//go:build !unix

package agent

import "time"

// processCPU returns the CPU time the process has used, and false where
// the platform does not say.
func processCPU() (time.Duration, bool) { return 0, false }

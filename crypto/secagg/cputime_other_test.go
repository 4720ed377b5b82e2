//go:build !unix

package secagg

import "time"

// processCPU is unavailable here; CPU-time metrics then read zero.
func processCPU() time.Duration { return 0 }

//go:build !linux

package encoding

import "time"

// threadCPU is unavailable here: benchmarks report wall-clock MB/s only.
func threadCPU() time.Duration { return 0 }

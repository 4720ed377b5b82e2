//go:build unix

package tensor

import (
	"syscall"
	"time"
)

// cpuTime returns the user plus system CPU time the process has used, so
// benchmarks on a shared machine can report throughput per CPU-second.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

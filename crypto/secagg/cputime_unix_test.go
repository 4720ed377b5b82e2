//go:build unix

package secagg

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user + system) this process has used,
// over all threads. Benchmarks report rates per CPU-second besides wall
// time because the machine is shared: CPU time does not count the time the
// process waited for a core.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

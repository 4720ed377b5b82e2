//go:build unix

package tensor

import "syscall"

// processCPUSeconds returns the user+system CPU time of the process, or 0
// where it cannot be read. On a shared machine flops per CPU-second show a
// kernel's efficiency even while other processes take turns on the cores.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

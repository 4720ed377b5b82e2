// Package memlimit bounds the Go heap's collection slack while a process
// holds a large vector for a while: a coordinator's running sum of a
// round, an agent's model and update. With the default GOGC=100 the heap
// may grow to twice its live size between collections, so a process
// whose live data is one 1 GB vector could reach 2 GB of RSS from the
// garbage of its transfers alone. Reserve raises the runtime's soft
// memory limit (runtime/debug.SetMemoryLimit) to what the process uses
// now, plus the reserved bytes, plus a small headroom: the collector
// then runs before the garbage outgrows the headroom, and, the big
// vectors holding no pointers, such a collection costs little. The last
// Release restores the limit and returns the freed pages to the
// operating system at once (debug.FreeOSMemory).
//
// The runtime's memory limit belongs to the whole process, so the
// reservations are process-wide too (the one package-level state of
// fedge, guarded by a mutex). An operator's GOMEMLIMIT wins: when it is
// set, Reserve changes nothing.
package memlimit

// Package telemetry builds the Prometheus registries of fedge's daemons.
// Each coordinator node and each agent owns one registry (nothing here is
// package-level state, so several daemons in one process, as in tests and
// `fedge dev`, keep their series apart). NewRegistry fills a registry
// with the series every fedge daemon exports: the Go runtime's (go_*),
// the process's (process_*) and fedge_build_info; Handler serves it in
// the Prometheus exposition formats.
package telemetry

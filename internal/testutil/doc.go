// Package testutil holds helpers shared by fedge's tests that are not API:
// the MNIST folder for tests, the rule for missing data or tools (fail
// under CI, skip locally), free loopback ports and polling (test-failing
// wrappers of internal/netutil and internal/wait), scraping a Prometheus
// /metrics endpoint, running a test as a child process (StartChild) and
// the torch example's initial weights (TorchInit). Production code never
// imports it.
package testutil

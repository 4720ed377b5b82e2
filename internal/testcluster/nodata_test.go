package testcluster_test

import (
	"testing"

	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/internal/testcluster"
)

// TestCoordinatorsNeedNoData: a cluster without agents (the coordinator
// package's own cluster tests) starts without MNIST files, even under CI,
// where missing data fails a test that needs it.
func TestCoordinatorsNeedNoData(t *testing.T) {
	t.Setenv("CI", "true")
	t.Setenv(mnist.EnvDir, t.TempDir()) // no MNIST files here
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	if _, n := c.Leader(); n != c.Nodes[0] {
		t.Fatalf("leader %v, want the only node", n)
	}
	if c.MNIST != "" {
		t.Fatalf("MNIST folder %q looked up for a cluster without agents", c.MNIST)
	}
}

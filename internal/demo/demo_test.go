package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWritePlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acc.png")
	rounds := []RoundLine{{Round: 1, Accuracy: 0.5}, {Round: 2, Accuracy: 0.8}, {Round: 3, Accuracy: 0.96}}
	if err := writePlot(path, rounds, 0.95); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 2000 {
		t.Fatalf("not a plausible PNG: %d bytes", len(b))
	}
}

func TestFreePortsDistinct(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		ports, err := freePorts(network, 5)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, p := range ports {
			if seen[p] || !strings.HasPrefix(p, "127.0.0.1:") {
				t.Fatalf("%s ports %v", network, ports)
			}
			seen[p] = true
		}
	}
}

func TestOptionsNeedMNISTAndPoll(t *testing.T) {
	if _, err := Run(context.Background(), Options{Binary: "/bin/true"}, &bytes.Buffer{}); err == nil {
		t.Fatal("a demo without MNIST data started")
	}
	n := 0
	if err := poll(context.Background(), time.Second, func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Fatalf("poll: %v after %d calls", err, n)
	}
	if err := poll(context.Background(), 300*time.Millisecond, func() bool { return false }); err == nil {
		t.Fatal("poll of a false condition succeeded")
	}
}

package coordinator

import "testing"

// TestAdvertiseFor: a zero port in the advertised address (however it is
// spelled) takes the bound port; any other address is kept.
func TestAdvertiseFor(t *testing.T) {
	tests := []struct{ adv, bound, want string }{
		{"127.0.0.1:0", "127.0.0.1:4242", "127.0.0.1:4242"},
		{"127.0.0.1:00", "127.0.0.1:4242", "127.0.0.1:4242"},
		{"[::1]:0", "[::1]:4242", "[::1]:4242"},
		{"node1.example:0", "10.0.0.1:7000", "node1.example:7000"},
		{"127.0.0.1:7000", "127.0.0.1:4242", "127.0.0.1:7000"},
		{"127.0.0.1:10", "127.0.0.1:4242", "127.0.0.1:10"},
	}
	for _, tt := range tests {
		if got := advertiseFor(tt.adv, tt.bound); got != tt.want {
			t.Errorf("advertiseFor(%q, %q) = %q, want %q", tt.adv, tt.bound, got, tt.want)
		}
	}
}

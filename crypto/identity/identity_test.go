package identity_test

import (
	"crypto/rand"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/fedge/fedge/crypto/identity"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"ag-abcdefgh23456789", true},
		{"node-1", true},
		{"a", true},
		{"alice.ops_team", true},
		{strings.Repeat("a", identity.MaxIDLen), true},
		{"", false},
		{strings.Repeat("a", identity.MaxIDLen+1), false},
		{"-lead", false},
		{".hidden", false},
		{"Alice", false},
		{"a/b", false},
		{"a b", false},
		{"a%2f", false},
		{"é", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		err := identity.ValidateID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, identity.ErrInvalidID) {
			t.Errorf("ValidateID(%q) error %v does not wrap ErrInvalidID", tt.id, err)
		}
	}
}

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		in   string
		want identity.Identity
		ok   bool
	}{
		{"fedge://agent/ag-x", identity.Identity{Role: identity.RoleAgent, ID: "ag-x"}, true},
		{"fedge://coordinator/node-1", identity.Identity{Role: identity.RoleCoordinator, ID: "node-1"}, true},
		{"fedge://admin/alice", identity.Identity{Role: identity.RoleAdmin, ID: "alice"}, true},
		{"fedge://root/alice", identity.Identity{}, false},
		{"https://agent/ag-x", identity.Identity{}, false},
		{"fedge://agent/", identity.Identity{}, false},
		{"fedge://agent/a/b", identity.Identity{}, false},
		{"fedge://agent/a?x=1", identity.Identity{}, false},
		{"fedge://agent/a#f", identity.Identity{}, false},
		{"fedge://u@agent/a", identity.Identity{}, false},
		{"fedge://agent:1/a", identity.Identity{}, false},
		{"fedge://agent/%61", identity.Identity{}, false},
		{"fedge:agent/a", identity.Identity{}, false},
		{"fedge://AGENT/a", identity.Identity{}, false},
	}
	for _, tt := range tests {
		got, err := identity.ParseIdentity(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseIdentity(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestRoleNames(t *testing.T) {
	for _, r := range []identity.Role{identity.RoleAgent, identity.RoleCoordinator, identity.RoleAdmin} {
		got, err := identity.ParseRole(r.String())
		if err != nil || got != r || !r.Valid() {
			t.Errorf("role %d: ParseRole(%q) = %v, %v", r, r.String(), got, err)
		}
	}
	if identity.Role(0).Valid() || identity.Role(4).Valid() {
		t.Error("roles 0 and 4 must be invalid")
	}
	if err := (identity.Identity{Role: 9, ID: "x"}).Validate(); !errors.Is(err, identity.ErrInvalidID) {
		t.Errorf("Validate of role 9 = %v", err)
	}
}

func TestNewAgentID(t *testing.T) {
	re := regexp.MustCompile(`^ag-[a-z2-7]{16}$`)
	seen := map[string]bool{}
	for range 100 {
		id, err := identity.NewAgentID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(id) || identity.ValidateID(id) != nil {
			t.Fatalf("agent ID %q has the wrong form", id)
		}
		if seen[id] {
			t.Fatalf("agent ID %q repeated", id)
		}
		seen[id] = true
	}
	a, _ := identity.NewAgentID(&detRand{})
	b, _ := identity.NewAgentID(&detRand{})
	if a != b {
		t.Errorf("same random stream gave %q and %q", a, b)
	}
	if _, err := identity.NewAgentID(strings.NewReader("short")); err == nil {
		t.Error("NewAgentID accepted a short random stream")
	}
}

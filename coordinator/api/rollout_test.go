package api

import (
	"errors"
	"testing"
)

func TestParseGate(t *testing.T) {
	tests := []struct {
		expr string
		want string
		ok   bool
	}{
		{"accuracy>=baseline-0.5", "accuracy>=baseline-0.5", true},
		{" accuracy >= baseline ", "accuracy>=baseline", true},
		{"loss<=baseline+0.01", "loss<=baseline+0.01", true},
		{"accuracy>95", "accuracy>95", true},
		{"precision>=1", "", false},
		{"accuracy=>1", "", false},
		{"accuracy>=baselineX", "", false},
		{"accuracy>=", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			g, err := ParseGate(tt.expr)
			if (err == nil) != tt.ok {
				t.Fatalf("err %v", err)
			}
			if err != nil {
				if !errors.Is(err, ErrBadGate) {
					t.Fatalf("not ErrBadGate: %v", err)
				}
				return
			}
			if g.String() != tt.want {
				t.Fatalf("got %s want %s", g, tt.want)
			}
		})
	}
}

func TestGatePass(t *testing.T) {
	g, _ := ParseGate("accuracy>=baseline-0.5")
	good := NewEvidence(5, EvalSums{Correct: 958, Total: 1000}, EvalSums{Correct: 960, Total: 1000})
	bad := NewEvidence(5, EvalSums{Correct: 100, Total: 1000}, EvalSums{Correct: 960, Total: 1000})
	if ok, _, _ := g.Pass(good); !ok {
		t.Fatal("95.8 vs 96.0-0.5 should pass")
	}
	if ok, got, want := g.Pass(bad); ok || got != 10 || want != 95.5 {
		t.Fatalf("bad candidate passed: %v %v %v", ok, got, want)
	}
	l, _ := ParseGate("loss<=baseline")
	e := NewEvidence(3, EvalSums{Correct: 1, Total: 10, LossSum: 5}, EvalSums{Correct: 1, Total: 10, LossSum: 6})
	if ok, _, _ := l.Pass(e); !ok {
		t.Fatal("lower loss should pass")
	}
}

package identity_test

import (
	"crypto/rand"
	"math/big"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

func BenchmarkIssueAgent(b *testing.B) {
	now := time.Now()
	ca := newCA(b, "bench", now)
	csr, err := identity.NewCSR(mustKey(b), "ag-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := ca.IssueAgent(csr, "ag-bench", 0, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// BenchmarkHandshakeAgent measures a full mutual TLS 1.3 handshake of an
// agent with a coordinator listener, loopback TCP connection set-up
// included.
func BenchmarkHandshakeAgent(b *testing.B) {
	e := newEnv(b)
	agent := agentCert(b, e.ca, "ag-bench", 0, time.Now())
	cfg, err := identity.AgentConfig(agent, e.ca.Pool(), identity.ALPNAgent)
	if err != nil {
		b.Fatal(err)
	}
	cfg.ServerName = "localhost"
	for i := range 1000 { // a realistic list to consult on every handshake
		_ = e.rev.RevokeSerial(big.NewInt(int64(i+1)), time.Now().Add(time.Hour))
	}
	b.ResetTimer()
	for b.Loop() {
		if o := handshake(b, e.server, cfg); !o.ok() {
			b.Fatal(o.serverErr, o.clientErr)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

func BenchmarkRevoked100k(b *testing.B) {
	var l identity.RevocationList
	for i := range 100_000 {
		_ = l.RevokeSerial(new(big.Int).Lsh(big.NewInt(int64(i+1)), 64), time.Now().Add(time.Hour))
	}
	id := identity.Identity{Role: identity.RoleAgent, ID: "ag-bench"}
	probe := new(big.Int).Lsh(big.NewInt(777), 64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !l.Revoked(probe, id) {
				b.Fatal("not revoked")
			}
		}
	})
}

func BenchmarkRevocationListMarshal100k(b *testing.B) {
	var l identity.RevocationList
	for i := range 100_000 {
		_ = l.RevokeSerial(new(big.Int).Lsh(big.NewInt(int64(i+1)), 64), time.Now().Add(time.Hour))
	}
	enc, _ := l.MarshalBinary()
	b.SetBytes(int64(len(enc)))
	b.ResetTimer()
	for b.Loop() {
		enc, _ = l.MarshalBinary()
		var r identity.RevocationList
		if err := r.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyJoinToken(b *testing.B) {
	now := time.Now()
	ca := newCA(b, "bench", now)
	token, rec, err := identity.NewJoinToken(rand.Reader, ca, time.Hour, nil, now)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := identity.VerifyJoinToken(rec, token, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenCA(b *testing.B) {
	ca := newCA(b, "bench", time.Now())
	key, _ := identity.NewSealKey(rand.Reader)
	sealed, err := ca.Seal(key)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := identity.OpenCA(sealed, key); err != nil {
			b.Fatal(err)
		}
	}
}

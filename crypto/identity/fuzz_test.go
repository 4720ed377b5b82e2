package identity_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

// fuzzSealKey is the key FuzzOpenCA opens with; its seed corpus holds a
// CA sealed under it, so mutations explore the decrypting path too.
func fuzzSealKey() []byte {
	k := make([]byte, identity.SealKeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func FuzzOpenCA(f *testing.F) {
	key := fuzzSealKey()
	ca, err := identity.NewCA(&detRand{}, "fuzz", t0)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := ca.Seal(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add(sealed[:40])
	pass, err := ca.SealPassphrase([]byte("fuzz"), identity.KDFParams{Time: 1, MemoryKiB: 8, Threads: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pass)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := identity.OpenCA(b, key)
		if err != nil {
			if !errors.Is(err, identity.ErrSealKey) && !errors.Is(err, identity.ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Whatever opens is a working CA that seals back to itself.
		again, err := got.Seal(key)
		if err != nil {
			t.Fatal(err)
		}
		back, err := identity.OpenCA(again, key)
		if err != nil || back.Pin() != got.Pin() || back.ClusterName() != got.ClusterName() {
			t.Fatalf("re-seal round trip: %v", err)
		}
	})
}

func FuzzTokenRecordUnmarshal(f *testing.F) {
	b, err := goldenRecord().MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r identity.TokenRecord
		if err := r.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, identity.ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("non-canonical encoding accepted:\n in %x\nout %x", b, out)
		}
	})
}

func FuzzParseJoinToken(f *testing.F) {
	ca, err := identity.NewCA(&detRand{}, "fuzz", t0)
	if err != nil {
		f.Fatal(err)
	}
	token, rec, err := identity.NewJoinToken(&detRand{}, ca, time.Hour, nil, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(token)
	f.Add("fedge1...")
	f.Fuzz(func(t *testing.T, s string) {
		id, pin, err := identity.ParseJoinToken(s)
		verr := identity.VerifyJoinToken(rec, s, t0)
		if err != nil {
			if !errors.Is(err, identity.ErrTokenInvalid) || !errors.Is(verr, identity.ErrTokenInvalid) {
				t.Fatalf("parse %v, verify %v", err, verr)
			}
			return
		}
		if !strings.HasPrefix(s, "fedge1."+id+".") || !strings.HasSuffix(s, fmt.Sprintf(".%x", pin)) {
			t.Fatalf("parsed %q, %x from %q", id, pin, s)
		}
		// Only the ID and secret are checked against the record; the pin
		// is the agent's business.
		if cut := strings.LastIndexByte(token, '.'); verr == nil && s[:cut] != token[:cut] {
			t.Fatalf("%q verified against the record of %q", s, token)
		}
	})
}

func FuzzRevocationListUnmarshal(f *testing.F) {
	var l identity.RevocationList
	_ = l.RevokeSerial(big.NewInt(77), t0)
	_ = l.RevokeSerial(new(big.Int).Lsh(big.NewInt(3), 120), t0)
	_ = l.RevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "ag-x"})
	_ = l.RevokeIdentity(identity.Identity{Role: identity.RoleAdmin, ID: "bob"})
	b, err := l.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r identity.RevocationList
		if err := r.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, identity.ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("non-canonical encoding accepted (%v):\n in %x\nout %x", err, b, out)
		}
	})
}

// TestFuzzSeeds keeps testdata/fuzz/<Target>/ populated (rewritten with
// -update) so that plain `go test` replays the corpus of every target.
func TestFuzzSeeds(t *testing.T) {
	key := fuzzSealKey()
	ca, err := identity.NewCA(&detRand{}, "fuzz", t0)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := ca.Seal(key)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := ca.Seal(make([]byte, identity.SealKeySize))
	rec, _ := goldenRecord().MarshalBinary()
	token, _, _ := identity.NewJoinToken(&detRand{}, ca, time.Hour, nil, t0)
	rl, _ := goldenList(t).MarshalBinary()
	_, recNoLabels, _ := identity.NewJoinToken(rand.Reader, ca, time.Hour, nil, t0)
	rec2, _ := recNoLabels.MarshalBinary()
	seeds := map[string]map[string]string{
		"FuzzOpenCA": {
			"valid":     bytesSeed(sealed),
			"wrong_key": bytesSeed(wrongKey),
			"header":    bytesSeed(sealed[:9+len("fuzz")]),
		},
		"FuzzTokenRecordUnmarshal": {
			"golden":    bytesSeed(rec),
			"no_labels": bytesSeed(rec2),
			"truncated": bytesSeed(rec[:20]),
		},
		"FuzzParseJoinToken": {
			"valid":     "go test fuzz v1\nstring(" + strconv.Quote(token) + ")\n",
			"wrong_pin": "go test fuzz v1\nstring(" + strconv.Quote(token[:len(token)-1]+"g") + ")\n",
			"short":     "go test fuzz v1\nstring(\"fedge1.abc.def.00\")\n",
		},
		"FuzzRevocationListUnmarshal": {
			"golden": bytesSeed(rl),
			"empty":  bytesSeed([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}),
			"huge":   bytesSeed([]byte{1, 0xff, 0xff, 0xff, 0xff}),
		},
	}
	for target, files := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, body := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < len(files) {
			t.Errorf("%s: %d seed files, want at least %d (run go test -run TestFuzzSeeds -update): %v", dir, len(entries), len(files), err)
		}
	}
}

func bytesSeed(b []byte) string {
	return "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
}

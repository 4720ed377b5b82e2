package coordinator

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedge/fedge/crypto/identity"
)

// cheapKDF keeps argon2id fast in tests; the parameters travel in the
// sealed CA.
var cheapKDF = identity.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// initTLS initialises a one-node cluster with opt and returns the node's
// tls/ folder and the raw seal key (nil with a passphrase).
func initTLS(t *testing.T, opt InitOptions) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	key, err := InitClusterWith(rand.Reader, "seal", []Peer{{ID: "c1", Addr: "127.0.0.1:7001"}}, dir, t0, opt)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "c1", "tls"), key
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSealKeySources: the seal key comes from the environment, a file
// outside the data dir, a passphrase (from either) or, by default, the
// legacy tls/seal.key; a wrong one stops the node with an error naming
// its source.
func TestSealKeySources(t *testing.T) {
	legacy, legacyKey := initTLS(t, InitOptions{})
	outside, key := initTLS(t, InitOptions{SealKeyOutside: true})
	pass, rawNil := initTLS(t, InitOptions{Passphrase: []byte("open sesame"), KDF: cheapKDF})
	if rawNil != nil {
		t.Fatal("a passphrase-sealed cluster returned a raw key")
	}
	for _, d := range []string{outside, pass} {
		if _, err := os.Stat(filepath.Join(d, FileSealKey)); !os.IsNotExist(err) {
			t.Fatalf("%s: seal.key written next to the CA (%v)", d, err)
		}
	}
	other, _ := identity.NewSealKey(rand.Reader)
	keyFile := writeTemp(t, "seal.key", hex.EncodeToString(key)+"\n")
	tests := []struct {
		name    string
		dir     string
		sec     SecurityConfig
		want    error  // nil: the CA opens
		mention string // the error names the source
	}{
		{"legacy seal.key in tls/", legacy, SecurityConfig{}, nil, ""},
		{"env key", outside, SecurityConfig{SealKey: key}, nil, ""},
		{"key file", outside, SecurityConfig{SealKeyFile: keyFile}, nil, ""},
		{"passphrase env", pass, SecurityConfig{SealPassphrase: []byte("open sesame")}, nil, ""},
		{"passphrase file", pass, SecurityConfig{SealPassphraseFile: writeTemp(t, "pass", "open sesame\nignored\n")}, nil, ""},
		{"explicit source over legacy file", legacy, SecurityConfig{SealKey: legacyKey}, nil, ""},
		{"wrong env key", outside, SecurityConfig{SealKey: other}, identity.ErrSealKey, "FEDGE_SEAL_KEY"},
		{"wrong key file", outside, SecurityConfig{SealKeyFile: writeTemp(t, "k", hex.EncodeToString(other))}, identity.ErrSealKey, "k"},
		{"key file not hex", outside, SecurityConfig{SealKeyFile: writeTemp(t, "k2", "not a key")}, identity.ErrSealKey, "k2"},
		{"env key of wrong length", outside, SecurityConfig{SealKey: key[:16]}, ErrSealSource, "FEDGE_SEAL_KEY"},
		{"missing key file", outside, SecurityConfig{SealKeyFile: filepath.Join(t.TempDir(), "none")}, ErrSealSource, "none"},
		{"wrong passphrase", pass, SecurityConfig{SealPassphrase: []byte("open sesame!")}, identity.ErrSealKey, "FEDGE_SEAL_PASSPHRASE"},
		{"passphrase for a raw-key seal", outside, SecurityConfig{SealPassphrase: []byte("open sesame")}, identity.ErrSealKey, "raw seal key"},
		{"empty passphrase file", pass, SecurityConfig{SealPassphraseFile: writeTemp(t, "p0", "\n")}, ErrSealSource, "empty"},
		{"two sources", outside, SecurityConfig{SealKey: key, SealKeyFile: keyFile}, ErrSealSource, "at once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadCredentials(tt.dir, tt.sec)
			if tt.want != nil {
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.mention) {
					t.Fatalf("err = %v, want %v naming %q", err, tt.want, tt.mention)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ca, err := c.openCA(c.sealed)
			if err != nil || ca.ClusterName() != "seal" {
				t.Fatalf("openCA: %v", err)
			}
		})
	}
	// Without any source a node still starts (it serves, it cannot issue).
	c, err := loadCredentials(outside, SecurityConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.openCA(c.sealed); !errors.Is(err, errNoSealKey) {
		t.Fatalf("openCA without a key: %v, want errNoSealKey", err)
	}
	if len(c.admins) != 1 || c.admins[0].Name != "admin" || c.admins[0].CreatedBy != "fedge init" {
		t.Fatalf("admins.json: %+v", c.admins)
	}
}

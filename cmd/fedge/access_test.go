package main

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/internal/wait"
)

// TestCredentialVerbs drives tokens list/revoke, admins list/revoke/audit
// and the token TTL bound through the CLI against a real one-node cluster.
func TestCredentialVerbs(t *testing.T) {
	tc := startCluster(t)

	// A TTL above the default maximum (7 days) is refused by the cluster.
	code, _, errs := tc.admin(t, "tokens", "create", "-ttl", "200h")
	if code != exitFailed || !strings.Contains(errs, "at most 168h0m0s") {
		t.Fatalf("tokens create -ttl 200h: exit %d, stderr %q", code, errs)
	}
	var tok api.TokenResponse
	tc.okJSON(t, &tok, "tokens", "create", "-labels", "region=eu")
	secret := strings.Split(tok.Token, ".")[2]

	out := tc.ok(t, "tokens", "list")
	contains(t, "tokens list", out, "ID", "HASH", tok.ID, "valid", "region=eu", "operator:admin")
	var list []api.Token
	tc.okJSON(t, &list, "tokens", "list")
	raw := tc.ok(t, "tokens", "list", "-json")
	if strings.Contains(out, secret) || strings.Contains(raw, secret) {
		t.Fatal("tokens list shows the token's secret")
	}
	if len(list) != 1 || list[0].ID != tok.ID || list[0].State != api.TokenValid {
		t.Fatalf("tokens list -json: %+v", list)
	}

	contains(t, "tokens revoke", tc.ok(t, "tokens", "revoke", tok.ID), "Revoked join token "+tok.ID)
	tc.okJSON(t, &list, "tokens", "list")
	if list[0].State != api.TokenRevoked || list[0].RevokedBy != "operator:admin" {
		t.Fatalf("after revoke: %+v", list)
	}
	if code, _, _ := tc.admin(t, "tokens", "revoke", "aaaaaaaa"); code != exitNotFound {
		t.Fatalf("tokens revoke of an unknown token: exit %d, want %d", code, exitNotFound)
	}
	if code, _, _ := tc.admin(t, "tokens", "revoke"); code != exitUsage {
		t.Fatalf("tokens revoke without ID: exit %d, want %d", code, exitUsage)
	}

	// admins: fedge init's credential is recorded; a new one is issued,
	// listed, revoked, and then refused.
	var admins []api.Admin
	tc.okJSON(t, &admins, "admins", "list")
	if len(admins) != 1 || admins[0].Name != "admin" || admins[0].CreatedBy != "fedge init" {
		t.Fatalf("admins list: %+v", admins)
	}
	bobDir := filepath.Join(t.TempDir(), "bob")
	tc.ok(t, "admin-cert", "-name", "bob", "-out", bobDir)
	contains(t, "admins list", tc.ok(t, "admins", "list"), "NAME", "SERIAL", "admin", "fedge init", "bob", "operator:admin")
	bob := func(args ...string) (int, string, string) {
		return runCLI(t, append(args, "-coordinators", tc.addr, "-admin-dir", bobDir, "-timeout", "5s")...)
	}
	if code, _, errs := bob("cluster", "status"); code != exitOK {
		t.Fatalf("bob before revocation: exit %d: %s", code, errs)
	}
	if code, _, _ := tc.admin(t, "admins", "revoke", "bob", "-serial", "ab"); code != exitUsage {
		t.Fatalf("admins revoke NAME -serial: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := tc.admin(t, "admins", "revoke"); code != exitUsage {
		t.Fatalf("admins revoke without a target: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := tc.admin(t, "admins", "revoke", "nobody"); code != exitNotFound {
		t.Fatalf("admins revoke nobody: exit %d, want %d", code, exitNotFound)
	}
	var rr api.AdminRevokeResponse
	tc.okJSON(t, &rr, "admins", "revoke", "bob")
	if len(rr.Revoked) != 1 {
		t.Fatalf("admins revoke bob: %+v", rr)
	}
	contains(t, "admins revoke again", tc.ok(t, "admins", "revoke", "-serial", "serial=00"+strings.ToUpper(rr.Revoked[0])), "already revoked")
	if code, _, errs := bob("cluster", "status"); code != exitFailed || !strings.Contains(errs, "refused the operator credential") {
		t.Fatalf("revoked admin: exit %d, want %d with a refusal:\n%s", code, exitFailed, errs)
	}
	var audit []api.AuditEntry
	tc.okJSON(t, &audit, "admins", "audit")
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	if got, want := strings.Join(actions, ","), "admin.create,token.create,token.revoke,admin.create,admin.revoke"; got != want {
		t.Fatalf("audit %s, want %s", got, want)
	}
	contains(t, "admins audit", tc.ok(t, "admins", "audit", "-limit", "1"), "admin.revoke", rr.Revoked[0])
}

// TestInitSealKeyOptions: fedge init keeps the seal key out of the node
// folders on request, and the coordinator starts with it from the
// environment or a file, and refuses a wrong one with a clear error.
func TestInitSealKeyOptions(t *testing.T) {
	peers := "c1=" + testutil.FreeUDPAddrs(t, 1)[0]
	dir := t.TempDir()
	keyPath := filepath.Join(t.TempDir(), "secure", "seal.key")
	if code, _, errs := runCLI(t, "init", "-cluster", "k", "-peers", peers, "-out", filepath.Join(dir, "a"), "-seal-key-out", filepath.Join(dir, "a", "c1", "seal.key")); code != exitUsage {
		t.Fatalf("-seal-key-out inside a node folder: exit %d: %s", code, errs)
	}
	if code, _, _ := runCLI(t, "init", "-cluster", "k", "-peers", peers, "-out", filepath.Join(dir, "b"), "-seal-key-out", keyPath, "-print-seal-key"); code != exitUsage {
		t.Fatalf("two seal key options: exit %d", code)
	}
	code, out, errs := runCLI(t, "init", "-cluster", "k", "-peers", peers, "-out", filepath.Join(dir, "c"), "-seal-key-out", keyPath)
	if code != exitOK {
		t.Fatalf("init -seal-key-out: exit %d: %s", code, errs)
	}
	contains(t, "init -seal-key-out", out, keyPath, "FEDGE_SEAL_KEY")
	if _, err := os.Stat(filepath.Join(dir, "c", "c1", "tls", coordinator.FileSealKey)); !os.IsNotExist(err) {
		t.Fatalf("seal.key written next to the CA: %v", err)
	}
	keyHex, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
		t.Errorf("seal key mode %v", st.Mode().Perm())
	}
	code, out, _ = runCLI(t, "init", "-cluster", "k", "-peers", peers, "-out", filepath.Join(dir, "d"), "-print-seal-key")
	if code != exitOK || !strings.Contains(out, "shown once") {
		t.Fatalf("init -print-seal-key: exit %d\n%s", code, out)
	}
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte("open sesame\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, "init", "-cluster", "k", "-peers", peers, "-out", filepath.Join(dir, "e"), "-seal-passphrase-file", passFile); code != exitOK || !strings.Contains(out, "FEDGE_SEAL_PASSPHRASE") {
		t.Fatalf("init -seal-passphrase-file: exit %d\n%s%s", code, out, errs)
	}

	cfg := filepath.Join(dir, "c", "c1", coordinatorConfigFile)
	run := func(extra ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var o, e syncBuffer
		done := make(chan int, 1)
		go func() { done <- runCoordinatorContext(ctx, append([]string{"-config", cfg}, extra...), &o, &e) }()
		code, exited := -1, false
		if wait.Until(ctx, time.Minute, func() bool {
			select {
			case code = <-done:
				exited = true
				return true
			default:
			}
			return strings.Contains(o.String(), "listening on")
		}) != nil {
			return -1, o.String() + e.String() // ctx ended first
		}
		if !exited {
			cancel()
			code = <-done
		}
		return code, o.String() + e.String()
	}
	wrong := strings.Repeat("ab", 32)
	t.Setenv(envSealKey, wrong)
	if code, out := run(); code != exitFailed || !strings.Contains(out, "FEDGE_SEAL_KEY") || !strings.Contains(out, "wrong seal key") {
		t.Fatalf("wrong FEDGE_SEAL_KEY: exit %d\n%s", code, out)
	}
	t.Setenv(envSealKey, "not hex")
	if code, _ := run(); code != exitUsage {
		t.Fatalf("malformed FEDGE_SEAL_KEY: exit %d, want %d", code, exitUsage)
	}
	t.Setenv(envSealKey, strings.TrimSpace(string(keyHex)))
	if code, out := run(); code != exitOK {
		t.Fatalf("FEDGE_SEAL_KEY: exit %d\n%s", code, out)
	}
	t.Setenv(envSealKey, "")
	if code, out := run("-seal-key-file", keyPath); code != exitOK {
		t.Fatalf("-seal-key-file: exit %d\n%s", code, out)
	}
	if _, err := hex.DecodeString(strings.TrimSpace(string(keyHex))); err != nil {
		t.Fatalf("seal key file is not hex: %v", err)
	}
}

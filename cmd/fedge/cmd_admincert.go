package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
)

var adminCertSpec = cmdSpec{
	path: "admin-cert",
	help: `Issue a new operator credential. The Ed25519 key is generated here and never
leaves this machine: only its public key goes to the cluster, whose CA signs
an admin certificate for -name. ca.pem, admin.pem and admin.key (PKCS#8, mode
0600) are written into -out, ready for -admin-dir. Run it with an existing
operator credential; it refuses to overwrite a credential in -out.`,
	example: "fedge admin-cert -name alice -out ~/.fedge/alice\nFEDGE_ADMIN_DIR=~/.fedge/alice fedge cluster status",
}

// adminCertResult is what admin-cert reports.
type adminCertResult struct {
	Name   string `json:"name"`
	Dir    string `json:"dir"`
	Serial string `json:"serial"`
	Expiry string `json:"expires"`
}

func runAdminCert(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, adminCertSpec, true)
	name := c.fs.String("name", "", "operator name recorded in the certificate (e.g. alice)")
	out := c.fs.String("out", "", "folder to write ca.pem, admin.pem and admin.key into")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *name == "" {
		return c.usageFail(usagef("-name is required"))
	}
	if *out == "" {
		return c.usageFail(usagef("-out is required"))
	}
	if err := identity.ValidateID(*name); err != nil {
		return c.usageFail(usagef("-name: %v", err))
	}
	for _, f := range []string{api.FileCA, api.FileAdminCert, api.FileAdminKey} {
		if _, err := os.Stat(filepath.Join(*out, f)); err == nil {
			return c.fail(fmt.Errorf("%s already exists: refusing to overwrite a credential", filepath.Join(*out, f)))
		}
	}
	key, err := identity.NewKey(rand.Reader)
	if err != nil {
		return c.fail(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	var resp api.AdminCertResponse
	if err := c.call(context.Background(), func(ctx context.Context) (err error) {
		resp, err = cl.Admins().Issue(ctx, api.AdminCertRequest{Name: *name, PublicKey: pub})
		return err
	}); err != nil {
		return c.fail(err)
	}
	cert, err := checkAdminCert(resp, pub)
	if err != nil {
		return c.fail(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return c.fail(err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return c.fail(err)
	}
	files := []struct {
		name string
		typ  string
		der  []byte
	}{
		{api.FileCA, "CERTIFICATE", resp.CACert},
		{"admin.pem", "CERTIFICATE", resp.Cert},
		{"admin.key", "PRIVATE KEY", keyDER},
	}
	for _, f := range files {
		data := pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})
		if err := coordinator.WriteFileAtomic(filepath.Join(*out, f.name), data, 0o600); err != nil {
			return c.fail(err)
		}
	}
	res := adminCertResult{Name: *name, Dir: *out, Serial: cert.SerialNumber.Text(16), Expiry: when(cert.NotAfter)}
	return render(c, res, func(w io.Writer, r adminCertResult) error {
		_, err := fmt.Fprintf(w, "Wrote operator credential %q (serial %s, expires %s) to %s.\nUse it with: -admin-dir %s (or %s=%s)\n",
			r.Name, r.Serial, r.Expiry, r.Dir, r.Dir, envAdminDir, r.Dir)
		return err
	})
}

// checkAdminCert verifies that the issued certificate is for our key and
// chains to the CA the cluster returned.
func checkAdminCert(resp api.AdminCertResponse, pub ed25519.PublicKey) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(resp.Cert)
	if err != nil {
		return nil, fmt.Errorf("admin-cert: issued certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(resp.CACert)
	if err != nil {
		return nil, fmt.Errorf("admin-cert: CA certificate: %w", err)
	}
	got, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !bytes.Equal(got, pub) {
		return nil, fmt.Errorf("admin-cert: the issued certificate is not for the key generated here")
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("admin-cert: issued certificate does not chain to the CA: %w", err)
	}
	return cert, nil
}

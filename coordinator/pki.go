package coordinator

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

// Files of a coordinator's credentials, in <data dir>/tls.
const (
	FileCACert   = "ca.pem"    // the cluster CA certificate
	FileCASealed = "ca.sealed" // the CA with its key sealed under the seal key
	FileSealKey  = "seal.key"  // the 32-byte seal key, hex
	FileCert     = "node.pem"  // this node's certificate
	FileKey      = "node.key"  // this node's Ed25519 key
)

// Validity of certificates InitCluster issues.
const (
	CoordinatorCertTTL = 365 * 24 * time.Hour
	AdminCertTTL       = 90 * 24 * time.Hour
)

// Peer is one voter of a cluster.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // host:port (UDP)
}

// ParsePeers parses "c1=127.0.0.1:7001,c2=127.0.0.1:7002".
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("coordinator.ParsePeers: %q: want id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("coordinator.ParsePeers: %q: %w", part, err)
		}
		out = append(out, Peer{ID: id, Addr: addr})
	}
	if len(out) == 0 {
		return nil, errors.New("coordinator.ParsePeers: no peers")
	}
	return out, nil
}

// InitCluster creates a new cluster's CA and the credentials of every
// voter and of a first operator:
//
//	<out>/<node id>/tls/{ca.pem, ca.sealed, seal.key, node.pem, node.key}
//	<out>/admin/{ca.pem, admin.pem, admin.key}
//
// Each node's folder is meant to become (part of) that node's data dir.
func InitCluster(rnd io.Reader, name string, peers []Peer, out string, now time.Time) error {
	ca, err := identity.NewCA(rnd, name, now)
	if err != nil {
		return fmt.Errorf("coordinator.InitCluster: %w", err)
	}
	key, err := identity.NewSealKey(rnd)
	if err != nil {
		return err
	}
	sealed, err := ca.Seal(key)
	if err != nil {
		return err
	}
	caPEM := pemBlock("CERTIFICATE", ca.Certificate().Raw)
	for _, p := range peers {
		dir := filepath.Join(out, p.ID, "tls")
		nodeKey, err := identity.NewKey(rnd)
		if err != nil {
			return err
		}
		host, _, _ := net.SplitHostPort(p.Addr)
		hosts := []string{host, "localhost"}
		der, err := ca.IssueCoordinator(nodeKey.Public().(ed25519.PublicKey), p.ID, hosts, CoordinatorCertTTL, now)
		if err != nil {
			return fmt.Errorf("coordinator.InitCluster: node %s: %w", p.ID, err)
		}
		if err := writeFiles(dir, map[string][]byte{
			FileCACert: caPEM, FileCASealed: sealed, FileSealKey: []byte(hex.EncodeToString(key) + "\n"),
			FileCert: pemBlock("CERTIFICATE", der), FileKey: keyPEM(nodeKey),
		}); err != nil {
			return err
		}
	}
	return IssueAdminFiles(rnd, ca, "admin", filepath.Join(out, "admin"), now)
}

// IssueAdminFiles writes an operator credential (ca.pem, admin.pem,
// admin.key) issued by ca into dir.
func IssueAdminFiles(rnd io.Reader, ca *identity.CA, name, dir string, now time.Time) error {
	k, err := identity.NewKey(rnd)
	if err != nil {
		return err
	}
	der, err := ca.IssueAdmin(k.Public().(ed25519.PublicKey), name, AdminCertTTL, now)
	if err != nil {
		return fmt.Errorf("coordinator.IssueAdminFiles: %w", err)
	}
	return writeFiles(dir, map[string][]byte{
		FileCACert:  pemBlock("CERTIFICATE", ca.Certificate().Raw),
		"admin.pem": pemBlock("CERTIFICATE", der), "admin.key": keyPEM(k),
	})
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func keyPEM(k ed25519.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // an Ed25519 key always marshals
	}
	return pemBlock("PRIVATE KEY", der)
}

// writeFiles writes each file atomically (temp file + rename), private.
func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range files {
		if err := WriteFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// WriteFileAtomic writes data to path through a synced temporary file and
// a rename, so a crash leaves either the old or the new file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// credentials are a node's loaded TLS material.
type credentials struct {
	caCert  *x509.Certificate
	roots   *x509.CertPool
	cert    tls.Certificate // leaf + CA chain
	sealKey []byte
	sealed  []byte // may be nil on a node that was given no ca.sealed
	nodeID  string
}

// LoadPEMCert reads the first certificate of a PEM file.
func LoadPEMCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// LoadPEMKey reads an Ed25519 PKCS#8 private key.
func LoadPEMKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return ek, nil
}

// LoadKeyPair loads a certificate and key as a tls.Certificate whose chain
// includes ca.
func LoadKeyPair(certPath, keyPath string, ca *x509.Certificate) (tls.Certificate, *x509.Certificate, error) {
	cert, err := LoadPEMCert(certPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := LoadPEMKey(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tc, err := identity.TLSCertificate(key, cert.Raw, ca)
	return tc, cert, err
}

func loadCredentials(dir string) (*credentials, error) {
	wrap := func(err error) error { return fmt.Errorf("coordinator: credentials in %s: %w", dir, err) }
	caCert, err := LoadPEMCert(filepath.Join(dir, FileCACert))
	if err != nil {
		return nil, wrap(err)
	}
	tc, leaf, err := LoadKeyPair(filepath.Join(dir, FileCert), filepath.Join(dir, FileKey), caCert)
	if err != nil {
		return nil, wrap(err)
	}
	id, err := identity.CertIdentity(leaf)
	if err != nil {
		return nil, wrap(err)
	}
	if id.Role != identity.RoleCoordinator {
		return nil, wrap(fmt.Errorf("%s is a %s certificate, want coordinator", FileCert, id.Role))
	}
	c := &credentials{caCert: caCert, roots: x509.NewCertPool(), cert: tc, nodeID: id.ID}
	c.roots.AddCert(caCert)
	if b, err := os.ReadFile(filepath.Join(dir, FileSealKey)); err == nil {
		if c.sealKey, err = hex.DecodeString(strings.TrimSpace(string(b))); err != nil {
			return nil, wrap(fmt.Errorf("%s: %w", FileSealKey, err))
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, FileCASealed)); err == nil {
		c.sealed = b
	}
	return c, nil
}

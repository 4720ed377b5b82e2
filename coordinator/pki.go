package coordinator

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/fedge/fedge/coordinator/api"
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
	FileCACert   = api.FileCA    // the cluster CA certificate
	FileCASealed = "ca.sealed"   // the CA with its key sealed under the seal key
	FileSealKey  = "seal.key"    // the 32-byte seal key, hex (unless fedge init kept it out)
	FileAdmins   = "admins.json" // the operator credentials fedge init issued, recorded at bootstrap
	FileCert     = "node.pem"    // this node's certificate
	FileKey      = "node.key"    // this node's Ed25519 key
)

// Validity of certificates InitCluster issues.
const (
	CoordinatorCertTTL = 365 * 24 * time.Hour
	AdminCertTTL       = 90 * 24 * time.Hour
)

// DefaultMaxTokenTTL is the longest join-token lifetime a leader issues
// when SecurityConfig.MaxTokenTTL is zero.
const DefaultMaxTokenTTL = 7 * 24 * time.Hour

// SecurityConfig says where a node finds the key that opens the sealed CA,
// and bounds the credentials it issues. At most one seal source may be
// set; with none, the node reads tls/seal.key (where fedge init writes it
// by default), so clusters created before these options keep working.
type SecurityConfig struct {
	// MaxTokenTTL is the longest join-token lifetime this node issues while
	// it leads; longer requests are refused. Zero means DefaultMaxTokenTTL.
	MaxTokenTTL Duration `json:"max_token_ttl,omitempty"`
	// SealKeyFile is a file holding the seal key in hex, kept outside the
	// data dir (another disk, a secret mount).
	SealKeyFile string `json:"seal_key_file,omitempty"`
	// SealPassphraseFile is a file whose first line is the passphrase the
	// CA was sealed with (fedge init -seal-passphrase).
	SealPassphraseFile string `json:"seal_passphrase_file,omitempty"`
	// SealKey is the seal key itself (fedge coordinator reads it, in hex,
	// from FEDGE_SEAL_KEY). Never written out.
	SealKey []byte `json:"-"`
	// SealPassphrase is the passphrase itself (fedge coordinator reads it
	// from FEDGE_SEAL_PASSPHRASE). Never written out.
	SealPassphrase []byte `json:"-"`
}

// maxTokenTTL returns the configured bound or its default.
func (c SecurityConfig) maxTokenTTL() time.Duration {
	if c.MaxTokenTTL > 0 {
		return time.Duration(c.MaxTokenTTL)
	}
	return DefaultMaxTokenTTL
}

// ErrTokenTTL is returned for a join token asked to live longer than the
// cluster allows.
var ErrTokenTTL = errors.New("coordinator: token TTL above the maximum")

// ErrSealSource reports a seal key source that cannot be used: two given
// at once, an unreadable file, an empty passphrase.
var ErrSealSource = errors.New("coordinator: bad seal key source")

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

// InitOptions choose where InitClusterWith leaves the seal key. The zero
// value writes it next to the sealed CA in each node's tls/ folder.
type InitOptions struct {
	// Passphrase, when not empty, seals the CA under a key argon2id
	// stretches from it (identity.CA.SealPassphrase); no key is written
	// and every coordinator needs the passphrase.
	Passphrase []byte
	// KDF tunes argon2id for Passphrase; zero fields mean identity's
	// defaults.
	KDF identity.KDFParams
	// SealKeyOutside leaves seal.key out of the nodes' folders:
	// InitClusterWith returns the key for the caller to hand over (print
	// it once, write it elsewhere).
	SealKeyOutside bool
}

// InitCluster creates a new cluster's CA and the credentials of every
// voter and of a first operator:
//
//	<out>/<node id>/tls/{ca.pem, ca.sealed, seal.key, admins.json, node.pem, node.key}
//	<out>/admin/{ca.pem, admin.pem, admin.key}
//
// Each node's folder is meant to become (part of) that node's data dir.
func InitCluster(rnd io.Reader, name string, peers []Peer, out string, now time.Time) error {
	_, err := InitClusterWith(rnd, name, peers, out, now, InitOptions{})
	return err
}

// InitClusterWith is InitCluster with a choice of where the seal key
// goes. It returns the raw seal key (nil with a passphrase).
func InitClusterWith(rnd io.Reader, name string, peers []Peer, out string, now time.Time, opt InitOptions) ([]byte, error) {
	ca, err := identity.NewCA(rnd, name, now)
	if err != nil {
		return nil, fmt.Errorf("coordinator.InitCluster: %w", err)
	}
	var key, sealed []byte
	if len(opt.Passphrase) > 0 {
		sealed, err = ca.SealPassphrase(opt.Passphrase, opt.KDF)
	} else if key, err = identity.NewSealKey(rnd); err == nil {
		sealed, err = ca.Seal(key)
	}
	if err != nil {
		return nil, fmt.Errorf("coordinator.InitCluster: %w", err)
	}
	admin, err := IssueAdminFiles(rnd, ca, "admin", filepath.Join(out, "admin"), now)
	if err != nil {
		return nil, err
	}
	admins, err := json.MarshalIndent([]AdminRecord{{
		Serial: admin.SerialNumber.Text(16), Name: "admin", CreatedAt: now.UTC(), CreatedBy: "fedge init", Expires: admin.NotAfter.UTC(),
	}}, "", "  ")
	if err != nil {
		return nil, err
	}
	caPEM := pemBlock("CERTIFICATE", ca.Certificate().Raw)
	for _, p := range peers {
		dir := filepath.Join(out, p.ID, "tls")
		nodeKey, err := identity.NewKey(rnd)
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(p.Addr)
		hosts := []string{host, "localhost"}
		der, err := ca.IssueCoordinator(nodeKey.Public().(ed25519.PublicKey), p.ID, hosts, CoordinatorCertTTL, now)
		if err != nil {
			return nil, fmt.Errorf("coordinator.InitCluster: node %s: %w", p.ID, err)
		}
		files := map[string][]byte{
			FileCACert: caPEM, FileCASealed: sealed, FileAdmins: append(admins, '\n'),
			FileCert: pemBlock("CERTIFICATE", der), FileKey: keyPEM(nodeKey),
		}
		if key != nil && !opt.SealKeyOutside {
			files[FileSealKey] = []byte(hex.EncodeToString(key) + "\n")
		}
		if err := writeFiles(dir, files); err != nil {
			return nil, err
		}
	}
	return key, nil
}

// IssueAdminFiles writes an operator credential (ca.pem, admin.pem,
// admin.key) issued by ca into dir and returns its certificate.
func IssueAdminFiles(rnd io.Reader, ca *identity.CA, name, dir string, now time.Time) (*x509.Certificate, error) {
	k, err := identity.NewKey(rnd)
	if err != nil {
		return nil, err
	}
	der, err := ca.IssueAdmin(k.Public().(ed25519.PublicKey), name, AdminCertTTL, now)
	if err != nil {
		return nil, fmt.Errorf("coordinator.IssueAdminFiles: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("coordinator.IssueAdminFiles: %w", err)
	}
	return cert, writeFiles(dir, map[string][]byte{
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
	caCert *x509.Certificate
	roots  *x509.CertPool
	cert   tls.Certificate // leaf + CA chain
	// sealKey opens the sealed CA; with a passphrase source it is derived
	// from the sealed CA (once known) and passphrase kept.
	sealKey    []byte
	passphrase []byte
	sealSource string        // where the key came from, for errors
	sealed     []byte        // may be nil on a node that was given no ca.sealed
	admins     []AdminRecord // from admins.json, recorded at bootstrap
	nodeID     string
}

// errNoSealKey is returned by a node that cannot open the CA.
var errNoSealKey = errors.New("coordinator: this node cannot issue certificates (no sealed CA or seal key)")

// openCA opens sealed (a replicated or local ca.sealed) with the node's
// seal key or passphrase.
func (c *credentials) openCA(sealed []byte) (*identity.CA, error) {
	if sealed == nil || (c.sealKey == nil && c.passphrase == nil) {
		return nil, errNoSealKey
	}
	key := c.sealKey
	if c.passphrase != nil && (key == nil || !bytes.Equal(sealed, c.sealed)) {
		k, err := identity.SealKeyFromPassphrase(sealed, c.passphrase)
		if err != nil {
			return nil, fmt.Errorf("coordinator: seal passphrase from %s: %w", c.sealSource, err)
		}
		key = k
	}
	ca, err := identity.OpenCA(sealed, key)
	if err != nil {
		return nil, fmt.Errorf("coordinator: seal key from %s: %w", c.sealSource, err)
	}
	return ca, nil
}

// loadSealSecret finds the seal key (or passphrase) in sec, or in
// dir/seal.key when sec names no source.
func (c *credentials) loadSealSecret(dir string, sec SecurityConfig) error {
	var given []string
	if sec.SealKey != nil {
		given = append(given, "FEDGE_SEAL_KEY")
	}
	if sec.SealPassphrase != nil {
		given = append(given, "FEDGE_SEAL_PASSPHRASE")
	}
	if sec.SealKeyFile != "" {
		given = append(given, "seal_key_file "+sec.SealKeyFile)
	}
	if sec.SealPassphraseFile != "" {
		given = append(given, "seal_passphrase_file "+sec.SealPassphraseFile)
	}
	if len(given) > 1 {
		return fmt.Errorf("%w: %s given at once; give one", ErrSealSource, strings.Join(given, " and "))
	}
	switch {
	case sec.SealKey != nil:
		if len(sec.SealKey) != identity.SealKeySize {
			return fmt.Errorf("%w: FEDGE_SEAL_KEY holds %d bytes, want %d: %w", ErrSealSource, len(sec.SealKey), identity.SealKeySize, identity.ErrSealKey)
		}
		c.sealKey, c.sealSource = sec.SealKey, "FEDGE_SEAL_KEY"
	case sec.SealPassphrase != nil:
		if len(sec.SealPassphrase) == 0 {
			return fmt.Errorf("%w: FEDGE_SEAL_PASSPHRASE is empty", ErrSealSource)
		}
		c.passphrase, c.sealSource = sec.SealPassphrase, "FEDGE_SEAL_PASSPHRASE"
	case sec.SealKeyFile != "":
		b, err := os.ReadFile(sec.SealKeyFile)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSealSource, err)
		}
		if c.sealKey, err = identity.ParseSealKey(string(b)); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrSealSource, sec.SealKeyFile, err)
		}
		c.sealSource = sec.SealKeyFile
	case sec.SealPassphraseFile != "":
		b, err := os.ReadFile(sec.SealPassphraseFile)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSealSource, err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if line = strings.TrimRight(line, "\r"); line == "" {
			return fmt.Errorf("%w: %s: empty passphrase", ErrSealSource, sec.SealPassphraseFile)
		}
		c.passphrase, c.sealSource = []byte(line), sec.SealPassphraseFile
	default:
		path := filepath.Join(dir, FileSealKey)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // a node without the key still serves; it cannot issue
		}
		if c.sealKey, err = identity.ParseSealKey(string(b)); err != nil {
			return fmt.Errorf("%s: %w", FileSealKey, err)
		}
		c.sealSource = path
	}
	if c.sealed == nil {
		return nil
	}
	// Check the secret now, so a wrong one stops the node at start with a
	// clear message rather than at the first enrollment.
	if _, err := c.openCA(c.sealed); err != nil {
		return fmt.Errorf("%s does not open: %w", FileCASealed, err)
	}
	if c.passphrase != nil {
		c.sealKey, _ = identity.SealKeyFromPassphrase(c.sealed, c.passphrase)
	}
	return nil
}

func loadCredentials(dir string, sec SecurityConfig) (*credentials, error) {
	wrap := func(err error) error { return fmt.Errorf("coordinator: credentials in %s: %w", dir, err) }
	caCert, err := identity.LoadPEMCert(filepath.Join(dir, FileCACert))
	if err != nil {
		return nil, wrap(err)
	}
	tc, leaf, err := identity.LoadKeyPair(filepath.Join(dir, FileCert), filepath.Join(dir, FileKey), caCert)
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
	if b, err := os.ReadFile(filepath.Join(dir, FileCASealed)); err == nil {
		c.sealed = b
	}
	if b, err := os.ReadFile(filepath.Join(dir, FileAdmins)); err == nil {
		if err := json.Unmarshal(b, &c.admins); err != nil {
			return nil, wrap(fmt.Errorf("%s: %w", FileAdmins, err))
		}
	}
	if err := c.loadSealSecret(dir, sec); err != nil {
		return nil, wrap(err)
	}
	return c, nil
}

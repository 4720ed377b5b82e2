package coordinator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/coordinator/console"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
)

// UIConfig is where and how a node serves the web console
// (coordinator/console). Zero values mean: no console.
type UIConfig struct {
	// UIListen is the TCP host:port of the console; empty (the default)
	// serves none. A loopback address serves plain HTTP; any other needs
	// UITLSCert and UITLSKey, or UIAllowInsecureHTTP, else the node
	// refuses to start. Port 0 picks a free port (UIAddr).
	UIListen string `json:"ui_listen,omitempty"`
	// UITLSCert and UITLSKey are PEM files of the console's HTTPS
	// certificate and key (a certificate browsers trust, not the
	// cluster CA's).
	UITLSCert string `json:"ui_tls_cert,omitempty"`
	UITLSKey  string `json:"ui_tls_key,omitempty"`
	// UIAllowInsecureHTTP serves plain HTTP on a non-loopback UIListen
	// (behind a proxy that terminates TLS).
	UIAllowInsecureHTTP bool `json:"ui_allow_insecure_http,omitempty"`
	// UIURL is the console's base URL as operators' browsers reach it,
	// named in login links; default: the scheme and bound address.
	UIURL string `json:"ui_url,omitempty"`
}

// ErrNoConsole is the answer to console.login on a node that serves no
// console.
var ErrNoConsole = errors.New("coordinator: this node serves no web console")

// startConsole serves the web console on UIListen.
func (n *Node) startConsole() error {
	c, err := console.New(console.Config{
		Listen: n.cfg.UIListen, TLSCertFile: n.cfg.UITLSCert, TLSKeyFile: n.cfg.UITLSKey,
		AllowInsecureHTTP: n.cfg.UIAllowInsecureHTTP, URL: n.cfg.UIURL,
		Node: n.cfg.NodeID, Logger: n.log.With("part", "console"),
	}, consoleBackend{n})
	if err != nil {
		return fmt.Errorf("coordinator.startConsole: %w", err)
	}
	n.console = c
	n.log.Info("web console serving", "url", c.URL())
	return nil
}

// UIAddr is the bound address of the web console, "" when UIListen is
// empty.
func (n *Node) UIAddr() string {
	if n.console == nil {
		return ""
	}
	return n.console.Addr()
}

// UIURL is the web console's base URL, "" when UIListen is empty.
func (n *Node) UIURL() string {
	if n.console == nil {
		return ""
	}
	return n.console.URL()
}

// consoleBackend is the console's way into the node: admin calls made
// as the logged-in operator, by the same rules as the admin ALPN's.
type consoleBackend struct{ n *Node }

var _ console.Backend = consoleBackend{}

func (b consoleBackend) Call(ctx context.Context, who, verb string, body []byte) ([]byte, error) {
	if err := b.n.checkReady(); err != nil {
		return nil, err
	}
	out, err := b.n.serveAdmin(ctx, who, verb, body)
	if err != nil {
		return nil, err
	}
	ar, ok := out.(*protocol.AdminResponse)
	if !ok {
		return nil, fmt.Errorf("coordinator.console: unexpected %s answer", out.Type())
	}
	return ar.Body, nil
}

// Model returns a version's model file from this node's replica, as
// model downloads do.
func (b consoleBackend) Model(_ context.Context, version uint64) ([]byte, error) {
	file, err := b.n.fsm.ModelFile(version)
	if err != nil {
		return nil, &protocol.Error{Code: protocol.CodeNotFound, Message: fmt.Sprintf("model %d is not held: %v", version, err)}
	}
	return file, nil
}

func (b consoleBackend) Revoked(serial string) bool {
	rev := false
	b.n.fsm.Read(func(s *State) { _, rev = s.Revoked[serial] })
	return rev
}

// operatorCertKey carries the admin session's certificate in the context
// of its calls (for console.login, which binds the link to it).
type operatorCertKey struct{}

// apiConsoleLogin mints a one-time login link to this node's console
// for the operator whose certificate made the call.
func (n *Node) apiConsoleLogin(c adminCall, r api.ConsoleLoginRequest) (*api.ConsoleLoginResponse, error) {
	if n.console == nil {
		return nil, fmt.Errorf("console.login: %w: start coordinator %s with -ui-listen (ui_listen), or ask one that serves it", ErrNoConsole, n.cfg.NodeID)
	}
	leaf, _ := c.ctx.Value(operatorCertKey{}).(*x509.Certificate)
	if leaf == nil {
		return nil, errors.New("console.login: only an operator's own session can ask for a login link")
	}
	id, err := identity.CertIdentity(leaf)
	if err != nil || id.Role != identity.RoleAdmin {
		return nil, errors.New("console.login: an admin certificate is required")
	}
	link, exp, err := n.console.Login(console.Operator{Name: id.ID, Serial: leaf.SerialNumber.Text(16), Expires: leaf.NotAfter}, time.Duration(r.TTL))
	if err != nil {
		return nil, err
	}
	return &api.ConsoleLoginResponse{URL: link, Node: n.cfg.NodeID, Expires: exp}, nil
}

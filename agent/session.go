package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/protocol"
)

// Connection tuning.
const (
	backoffMin         = 200 * time.Millisecond
	backoffMax         = 30 * time.Second
	maxRedirects       = 4 // redirects followed in a row before backing off
	authFailuresToStop = 3 // consecutive refusals of the certificate that end Run
	defaultHeartbeat   = 5 * time.Second
	heartbeatFailures  = 2 // failed heartbeats in a row that end a session
	renewRetry         = time.Minute
	// stableSession is how long a session must last for the backoff to
	// start over at its minimum.
	stableSession = 30 * time.Second
	// startingRetry caps the wait after a coordinator answered that it is
	// starting: it is ready within seconds, so the backoff must not grow
	// to its maximum meanwhile.
	startingRetry = time.Second
)

// errRenewed ends a session after a certificate renewal, so the next one
// presents the new certificate.
var errRenewed = errors.New("agent: certificate renewed")

// backoff is a jittered exponential backoff: each wait is drawn uniformly
// from [d/2, d] with d doubling from backoffMin to backoffMax.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = backoffMin
	} else {
		b.d = min(2*b.d, backoffMax)
	}
	half := b.d / 2
	return half + time.Duration(mrand.Int64N(int64(half)+1))
}

func (b *backoff) reset() { b.d = 0 }

// after returns the wait before retrying a failed attempt: the next
// backoff, capped at startingRetry if the coordinator is starting
// (protocol.ErrStarting).
func (b *backoff) after(err error) time.Duration {
	d := b.next()
	if errors.Is(err, protocol.ErrStarting) {
		b.d = min(b.d, startingRetry)
		d = min(d, startingRetry)
	}
	return d
}

// isAuthRefusal reports whether err is the cluster refusing the agent's
// certificate: a TLS alert from the server, a close for unauthorized, or a
// Hello refused as unauthorized or revoked.
func isAuthRefusal(err error) bool {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code == protocol.CodeUnauthorized || pe.Code == protocol.CodeRevoked
	}
	var te *quic.TransportError
	if errors.As(err, &te) {
		return te.Remote && te.ErrorCode.IsCryptoError()
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return ae.Remote && ae.ErrorCode == protocol.CloseUnauthorized
	}
	return errors.Is(err, protocol.ErrUnauthorized)
}

// addrs cycles through the configured coordinators, taking a redirect
// target first when there is one.
type addrs struct {
	list       []string
	i          int
	redirect   string
	redirected int
}

func (r *addrs) next() string {
	if r.redirect != "" {
		a := r.redirect
		r.redirect = ""
		return a
	}
	a := r.list[r.i%len(r.list)]
	r.i++
	return a
}

// follow records a redirect and reports whether to follow it at once.
func (r *addrs) follow(err error, from string) bool {
	var rd *protocol.Redirect
	if !errors.As(err, &rd) || rd.Addr == "" || rd.Addr == from || r.redirected >= maxRedirects {
		r.redirected = 0
		return false
	}
	r.redirect = rd.Addr
	r.redirected++
	return true
}

// connLoop enrolls if needed, then keeps a session with the leader until
// ctx ends or the cluster refuses the agent.
func (a *Agent) connLoop(ctx context.Context) error {
	a.mu.Lock()
	enrolled := a.cert != nil
	a.mu.Unlock()
	if !enrolled {
		if err := a.enroll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	} else if a.cfg.JoinToken != "" {
		a.log.Debug("already enrolled: the join token is not used", "agent", a.ID())
	}
	var bo backoff
	authFails := 0
	var hint string // the leader a session or a redirect named last
	for ctx.Err() == nil {
		sess, addr, err := a.dialLeader(ctx, hint)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			switch {
			case isAuthRefusal(err):
				authFails++
				a.log.Warn("coordinator refused the agent's certificate", "refusals", authFails, "err", err)
				if authFails >= authFailuresToStop {
					return a.refused(err)
				}
			case errors.Is(err, protocol.ErrStarting):
				a.log.Info("coordinator is starting; retrying", "addr", addr)
			default:
				a.log.Info("cannot reach the leader", "err", err)
			}
			if !wait.Sleep(ctx, bo.after(err)) {
				return nil
			}
			continue
		}
		authFails, hint = 0, addr
		began := time.Now()
		err = a.runSession(ctx, sess)
		sess.Close()
		a.m.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > stableSession {
			bo.reset()
		}
		var rd *protocol.Redirect
		switch {
		case errors.Is(err, errRenewed):
			continue
		case errors.As(err, &rd) && rd.Addr != "" && rd.Addr != addr:
			a.log.Info("coordinator lost leadership; following the redirect", "to", rd.Addr)
			hint = rd.Addr
			continue
		}
		a.log.Info("session with coordinator ended; reconnecting", "addr", addr, "err", err)
		// The leader may have died: ask every coordinator at once for the
		// new one, after a short wait (a jittered backoff keeps a fleet
		// from reconnecting in lockstep).
		if !wait.Sleep(ctx, bo.next()) {
			return nil
		}
	}
	return nil
}

// dialLeader dials every configured coordinator at once (and hint, the
// last known leader), follows the redirects the followers answer with,
// and returns the first session a leader accepted, closing any other. A
// dead or frozen node costs nothing while another answers. The error,
// when no leader accepted, holds every attempt's.
func (a *Agent) dialLeader(ctx context.Context, hint string) (*protocol.Session, string, error) {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		addr string
		sess *protocol.Session
		err  error
	}
	results := make(chan result)
	tried := map[string]bool{}
	pending := 0
	dial := func(addr string) {
		if addr == "" || tried[addr] || len(tried) >= len(a.cfg.Coordinators)+maxRedirects {
			return
		}
		tried[addr] = true
		pending++
		go func() {
			s, err := a.dialAgent(dctx, addr)
			results <- result{addr, s, err}
		}()
	}
	dial(hint)
	for _, addr := range a.cfg.Coordinators {
		dial(addr)
	}
	var win result
	var errs []error
	for pending > 0 {
		r := <-results
		pending--
		switch {
		case r.err == nil && win.sess == nil:
			win = r
			cancel() // the others are not needed
		case r.err == nil:
			r.sess.Close()
		default:
			var rd *protocol.Redirect
			if win.sess == nil && errors.As(r.err, &rd) {
				dial(rd.Addr)
			}
			if !errors.Is(r.err, context.Canceled) || ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.addr, r.err))
			}
		}
	}
	if win.sess != nil {
		return win.sess, win.addr, nil
	}
	return nil, "", fmt.Errorf("agent.dialLeader: %w", errors.Join(errs...))
}

// refused logs the one clear line an operator needs and returns the error
// that stops Run.
func (a *Agent) refused(last error) error {
	a.mu.Lock()
	cert := a.cert
	a.mu.Unlock()
	if cert != nil && !a.now().Before(cert.NotAfter) {
		a.log.Error("certificate expired: the agent was offline longer than its certificate lives; enroll again with a new join token",
			"agent", a.ID(), "expired", cert.NotAfter, "err", last)
		return ErrCertExpired
	}
	a.log.Error("certificate revoked or not recognised by the cluster", "agent", a.ID(), "err", last)
	return ErrRevoked
}

// dialAgent opens an authenticated agent session with addr.
func (a *Agent) dialAgent(ctx context.Context, addr string) (*protocol.Session, error) {
	return a.dialSession(ctx, addr, 0)
}

// dialSession opens an authenticated agent session with addr; a round
// other than 0 asks for a session that carries that sharded round's
// stage messages (Hello.Round), which any coordinator aggregating the
// agent's group accepts.
func (a *Agent) dialSession(ctx context.Context, addr string, round uint64) (*protocol.Session, error) {
	a.mu.Lock()
	key, id, certDER, roots := a.ident.key, a.ident.id, a.ident.cert, a.roots
	a.mu.Unlock()
	tc, err := identity.TLSCertificate(key, certDER, nil)
	if err != nil {
		return nil, fmt.Errorf("agent.dialAgent: %w", err)
	}
	tlsConf, err := identity.AgentConfig(tc, roots, protocol.ALPNAgent)
	if err != nil {
		return nil, fmt.Errorf("agent.dialAgent: %w", err)
	}
	hello := protocol.Hello{AgentID: id, Software: a.software, Round: round}
	if s := a.served.Load(); s != nil {
		hello.ModelVersion, hello.ModelHash = s.version, s.hash
	}
	timeout := a.cfg.sessionTimeout()
	return protocol.Dial(ctx, addr, tlsConf, protocol.ALPNAgent, &protocol.Config{
		Hello: hello, Handler: sessionHandler{a},
		// QUIC takes the smaller idle timeout of the two ends: the
		// coordinator and the agent both notice within timeout that the
		// other is gone (killed, frozen, unplugged). Keep-alives keep a
		// quiet session alive meanwhile.
		MaxIdleTimeout: timeout, KeepAlivePeriod: timeout / 3, HandshakeTimeout: timeout,
	})
}

// runSession sends heartbeats, acts on model announcements and renews the
// certificate until the session or ctx ends. Rounds are served by the
// session's handler meanwhile.
func (a *Agent) runSession(ctx context.Context, sess *protocol.Session) error {
	ack := sess.HelloAck()
	interval := ack.HeartbeatInterval
	if interval <= 0 {
		interval = defaultHeartbeat
	}
	a.m.sessionOpened()
	a.log.Info("connected to coordinator", "node", ack.NodeID, "addr", sess.RemoteAddr(), "heartbeat", interval)
	a.declineAbandoned(ctx, sess)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-sctx.Done():
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var seq uint64
	var lastRenew time.Time
	failures := 0
	for {
		a.mu.Lock()
		cert, busy := a.cert, len(a.rounds) > 0
		a.mu.Unlock()
		// A renewal ends the session, and with it a round in progress: wait
		// for the round unless the certificate is about to expire.
		urgent := a.now().After(cert.NotAfter.Add(-cert.NotAfter.Sub(cert.NotBefore) / 10))
		if identity.NeedsRenewal(cert, a.now()) && time.Since(lastRenew) > renewRetry && (!busy || urgent) {
			lastRenew = time.Now()
			err := a.renew(sctx, sess)
			if err == nil {
				return errRenewed
			}
			var rd *protocol.Redirect
			if errors.As(err, &rd) || sctx.Err() != nil {
				return err
			}
			a.log.Warn("certificate renewal failed; will retry", "err", err, "expires", cert.NotAfter)
		}
		seq++
		resp, err := a.heartbeat(sctx, sess, seq, interval)
		switch {
		case sctx.Err() != nil:
			if err := sess.Err(); err != nil {
				return err
			}
			return ctx.Err()
		case err != nil:
			var rd *protocol.Redirect
			if errors.As(err, &rd) {
				return err
			}
			failures++
			a.log.Debug("heartbeat failed", "err", err, "failures", failures)
			if failures >= heartbeatFailures {
				return fmt.Errorf("agent: %d heartbeats failed: %w", failures, err)
			}
		default:
			failures = 0
			if ann, ok := resp.(*protocol.ModelAnnounce); ok {
				a.startSync(sctx, sess, ann)
			}
		}
		select {
		case <-sctx.Done():
			if err := sess.Err(); err != nil {
				return err
			}
			return ctx.Err()
		case <-tick.C:
		case <-a.events.kicks(): // report a new warning or error now
		}
	}
}

// heartbeat reports the agent's status; a coordinator that does not answer
// within the session timeout counts as a failure.
func (a *Agent) heartbeat(ctx context.Context, sess *protocol.Session, seq uint64, interval time.Duration) (protocol.Message, error) {
	hctx, cancel := context.WithTimeout(ctx, max(interval, a.cfg.sessionTimeout()))
	defer cancel()
	a.mu.Lock()
	busy := len(a.rounds) > 0
	a.mu.Unlock()
	hb := &protocol.Heartbeat{Seq: seq, Sent: a.now(), ModelVersion: a.ModelVersion(), Busy: busy}
	if sess.Version() >= 3 { // older coordinators reject the status trailer
		hb.Status = a.status()
	}
	if sess.Version() >= 5 { // and the served lines after it
		hb.Lines = a.servedLineReport()
	}
	if sess.Version() >= 6 { // and how many rounds it runs at once
		hb.Concurrent = uint32(min(a.cfg.Jobs.concurrent(), math.MaxUint32))
	}
	return sess.Request(hctx, hb)
}

// declineAbandoned tells the coordinator, once, that the agent abandons the
// round a restart interrupted (its secrets died with the process), so the
// round stops waiting for it. Best effort: the round may be over.
func (a *Agent) declineAbandoned(ctx context.Context, sess *protocol.Session) {
	a.mu.Lock()
	id := a.abandoned
	a.mu.Unlock()
	if id == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.sessionTimeout())
	defer cancel()
	_, err := sess.Request(rctx, &protocol.RoundJoin{RoundID: id, Reason: "the agent restarted mid-round; it abandons the round"})
	var rd *protocol.Redirect
	if errors.As(err, &rd) || (err != nil && sess.Err() != nil) {
		return // not the leader, or the session ended: tell the next one
	}
	a.mu.Lock()
	if a.abandoned == id {
		a.abandoned = 0
	}
	a.mu.Unlock()
	a.log.Info("told the coordinator the interrupted round is abandoned", "round", id, "err", err)
}

// renew asks for a new certificate for the same key over the session and
// stores it.
func (a *Agent) renew(ctx context.Context, sess *protocol.Session) error {
	a.mu.Lock()
	key, id, caDER := a.ident.key, a.ident.id, a.ident.ca
	a.mu.Unlock()
	csr, err := identity.NewCSR(key, id)
	if err != nil {
		return fmt.Errorf("agent.renew: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := sess.Request(rctx, &protocol.EnrollRequest{CSR: csr})
	if err != nil {
		return fmt.Errorf("agent.renew: %w", err)
	}
	er, ok := resp.(*protocol.EnrollResponse)
	if !ok {
		return fmt.Errorf("agent.renew: unexpected %v reply", resp.Type())
	}
	if _, err := a.checkCert(er, id, key, caDER); err != nil {
		return fmt.Errorf("agent.renew: %w", err)
	}
	if err := a.st.saveCert(er.Cert); err != nil {
		return fmt.Errorf("agent.renew: %w", err)
	}
	if err := a.setCredentials(er.Cert, caDER, [32]byte{}); err != nil {
		return fmt.Errorf("agent.renew: %w", err)
	}
	a.mu.Lock()
	exp := a.cert.NotAfter
	a.mu.Unlock()
	a.log.Info("certificate renewed", "agent", id, "expires", exp)
	return nil
}

// checkCert verifies an issued certificate: it chains to caDER now, names
// this agent and certifies this key.
func (a *Agent) checkCert(er *protocol.EnrollResponse, id string, key ed25519.PrivateKey, caDER []byte) (*x509.Certificate, error) {
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(er.Cert)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	who, err := identity.VerifyCertificate(cert, roots, a.now())
	if err != nil {
		return nil, err
	}
	if who.Role != identity.RoleAgent || who.ID != id {
		return nil, fmt.Errorf("issued certificate names %s, not agent %s", who, id)
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("issued certificate is not for this agent's key")
	}
	return cert, nil
}

// enroll turns the join token into a certificate. The key and ID are
// created (and stored) before the first attempt, so retries and restarts
// use the same ones.
func (a *Agent) enroll(ctx context.Context) error {
	if a.cfg.JoinToken == "" {
		a.log.Error("not enrolled: set join_token (fedge agent -join-token ...) for the first start", "data_dir", a.cfg.DataDir)
		return ErrNotEnrolled
	}
	_, pin, err := identity.ParseJoinToken(a.cfg.JoinToken)
	if err != nil {
		return fmt.Errorf("agent.enroll: %w", err)
	}
	a.mu.Lock()
	haveKey := a.ident.key != nil
	a.mu.Unlock()
	if !haveKey {
		key, err := identity.NewKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("agent.enroll: %w", err)
		}
		id, err := identity.NewAgentID(rand.Reader)
		if err != nil {
			return fmt.Errorf("agent.enroll: %w", err)
		}
		if err := a.st.createIdentity(key, id); err != nil {
			return fmt.Errorf("agent.enroll: %w", err)
		}
		a.mu.Lock()
		a.ident.key, a.ident.id = key, id
		a.mu.Unlock()
	}
	a.mu.Lock()
	key, id := a.ident.key, a.ident.id
	a.mu.Unlock()
	csr, err := identity.NewCSR(key, id)
	if err != nil {
		return fmt.Errorf("agent.enroll: %w", err)
	}
	tlsConf, err := identity.EnrollClientConfig(pin, protocol.ALPNEnroll)
	if err != nil {
		return fmt.Errorf("agent.enroll: %w", err)
	}
	a.log.Info("enrolling with the cluster", "agent", id, "ca_pin", fmt.Sprintf("%x", pin[:8]))
	var bo backoff
	ad := &addrs{list: a.cfg.Coordinators}
	for ctx.Err() == nil {
		addr := ad.next()
		er, err := a.enrollOnce(ctx, addr, tlsConf, csr)
		if err == nil {
			if err := a.acceptEnrollment(er, pin, id, key); err != nil {
				return fmt.Errorf("agent.enroll: %w", err)
			}
			a.log.Info("enrolled", "agent", id, "coordinator", addr)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ad.follow(err, addr) {
			continue
		}
		var pe *protocol.Error
		if errors.As(err, &pe) && (pe.Code == protocol.CodeInvalidToken || pe.Code == protocol.CodeUnauthorized || pe.Code == protocol.CodeBadRequest) {
			a.log.Error("the cluster refused the enrollment; ask the operator for a new join token", "agent", id, "code", pe.Code, "reason", pe.Message)
			if err := a.st.dropUncertifiedIdentity(); err != nil {
				a.log.Warn("forgetting the unenrolled identity", "err", err)
			}
			return fmt.Errorf("%w: %s", ErrTokenRejected, pe.Message)
		}
		a.log.Info("enrollment attempt failed; retrying", "addr", addr, "err", err)
		if !wait.Sleep(ctx, bo.after(err)) {
			break
		}
	}
	return ctx.Err()
}

// acceptEnrollment checks the enrollment response against the token's CA
// pin, the agent's ID and key, and stores it.
func (a *Agent) acceptEnrollment(er *protocol.EnrollResponse, pin [32]byte, id string, key ed25519.PrivateKey) error {
	if _, err := identity.VerifyCAPin(er.CACert, pin); err != nil {
		return err
	}
	if er.AgentID != "" && er.AgentID != id {
		return fmt.Errorf("enrolled as %q, asked for %q", er.AgentID, id)
	}
	if _, err := a.checkCert(er, id, key, er.CACert); err != nil {
		return err
	}
	if err := a.st.saveEnrollment(pin, er.Cert, er.CACert); err != nil {
		return err
	}
	return a.setCredentials(er.Cert, er.CACert, pin)
}

// enrollOnce sends the enrollment request to one coordinator.
func (a *Agent) enrollOnce(ctx context.Context, addr string, tlsConf *tls.Config, csr []byte) (*protocol.EnrollResponse, error) {
	sess, err := protocol.Dial(ctx, addr, tlsConf, protocol.ALPNEnroll, &protocol.Config{Hello: protocol.Hello{Software: a.software}})
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := sess.Request(rctx, &protocol.EnrollRequest{Token: a.cfg.JoinToken, CSR: csr, Labels: a.cfg.Labels})
	if err != nil {
		return nil, err
	}
	er, ok := resp.(*protocol.EnrollResponse)
	if !ok {
		return nil, fmt.Errorf("unexpected %v reply to enrollment", resp.Type())
	}
	return er, nil
}

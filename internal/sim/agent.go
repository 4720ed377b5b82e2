package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/protocol"
)

// Session timing of a virtual agent: the agent daemon's defaults, but
// for the idle timeout. An agent daemon closes a session that heard
// nothing for 5 s; thousands of virtual agents share one process, and
// while its workers train a round's agents (or the host is loaded) a
// session's keep-alives can wait longer than that for the CPU: 663 of a
// 2,000-agent round's sessions idled out at 5 s on a loaded 2-core host.
// 30 s stands for agents on hosts of their own.
const (
	sessionTimeout   = 30 * time.Second
	defaultHeartbeat = 5 * time.Second
	handshakeTimeout = 10 * time.Second
	enrollTimeout    = 30 * time.Second
	reconnectMin     = 200 * time.Millisecond
	reconnectMax     = 10 * time.Second
	maxRedirects     = 4
)

// vagent is one virtual agent: its identity, its shard (indices into the
// fleet's dataset) and, while connected, its session.
type vagent struct {
	f     *fleet
	index int
	key   ed25519.PrivateKey
	id    string
	tls   *tls.Config // agent ALPN, with its certificate
	shard []int

	sess      atomic.Pointer[protocol.Session]
	connected atomic.Bool
	version   atomic.Uint64 // the model version it reports serving

	mu    sync.Mutex
	round *vround
}

// enroll creates the agent's key and ID and turns token into its
// certificate over the enroll ALPN, from the fleet's shared sockets.
func (a *vagent) enroll(ctx context.Context, token string, coordinators []string) error {
	_, pin, err := identity.ParseJoinToken(token)
	if err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	if a.key, err = identity.NewKey(rand.Reader); err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	if a.id, err = identity.NewAgentID(rand.Reader); err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	csr, err := identity.NewCSR(a.key, a.id)
	if err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	tc, err := identity.EnrollClientConfig(pin, protocol.ALPNEnroll)
	if err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	d := a.f.dialer(a.index)
	addr := coordinators[a.index%len(coordinators)]
	var er *protocol.EnrollResponse
	delay := reconnectMin
	for try := 0; ; try++ {
		er, err = a.enrollOnce(ctx, d, addr, tc, csr, token)
		if err == nil {
			break
		}
		var rd *protocol.Redirect
		var pe *protocol.Error
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("sim.enroll: %w", ctx.Err())
		case errors.As(err, &pe) && (pe.Code == protocol.CodeInvalidToken || pe.Code == protocol.CodeUnauthorized || pe.Code == protocol.CodeBadRequest):
			return fmt.Errorf("sim.enroll: agent %d: %w", a.index, err)
		case errors.As(err, &rd) && rd.Addr != "":
			addr = rd.Addr
			continue
		case try >= 20:
			return fmt.Errorf("sim.enroll: agent %d: %w", a.index, err)
		}
		addr = coordinators[(a.index+try+1)%len(coordinators)]
		if !wait.Sleep(ctx, delay) {
			return fmt.Errorf("sim.enroll: %w", ctx.Err())
		}
		delay = min(2*delay, reconnectMax)
	}
	if _, err := identity.VerifyCAPin(er.CACert, pin); err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	ca, err := x509.ParseCertificate(er.CACert)
	if err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cert, err := identity.TLSCertificate(a.key, er.Cert, nil)
	if err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	if a.tls, err = identity.AgentConfig(cert, roots, protocol.ALPNAgent); err != nil {
		return fmt.Errorf("sim.enroll: %w", err)
	}
	return nil
}

func (a *vagent) enrollOnce(ctx context.Context, d *protocol.Dialer, addr string, tc *tls.Config, csr []byte, token string) (*protocol.EnrollResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, enrollTimeout)
	defer cancel()
	sess, err := d.Dial(ctx, addr, tc, protocol.ALPNEnroll, &protocol.Config{Hello: protocol.Hello{Software: software}})
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	resp, err := sess.Request(ctx, &protocol.EnrollRequest{Token: token, CSR: csr, Labels: a.f.opts.Labels})
	if err != nil {
		return nil, err
	}
	er, ok := resp.(*protocol.EnrollResponse)
	if !ok {
		return nil, fmt.Errorf("unexpected %v reply to enrollment", resp.Type())
	}
	return er, nil
}

// run keeps a session with the leader until ctx ends, reconnecting with
// a jittered backoff and following redirects. dials bounds the fleet's
// handshakes in flight.
func (a *vagent) run(ctx context.Context, coordinators []string, dials chan struct{}) {
	delay := reconnectMin
	for ctx.Err() == nil {
		// The leader another agent found last: a dial to a follower
		// costs a handshake for a redirect.
		hint := a.f.leaderHint(coordinators[a.index%len(coordinators)])
		select {
		case dials <- struct{}{}:
		case <-ctx.Done():
			return
		}
		sess, addr, err := a.dialLeader(ctx, coordinators, hint)
		<-dials
		if err != nil {
			a.f.log.Debug("virtual agent cannot reach the leader", "agent", a.index, "err", err)
			if !wait.Sleep(ctx, jitter(delay)) {
				return
			}
			delay = min(2*delay, reconnectMax)
			continue
		}
		a.f.leader.Store(&addr)
		began := time.Now()
		a.sess.Store(sess)
		a.connected.Store(true)
		a.f.connected.Add(1)
		err = a.session(ctx, sess)
		a.f.connected.Add(-1)
		a.connected.Store(false)
		sess.Close()
		if ctx.Err() != nil {
			return
		}
		var rd *protocol.Redirect
		if errors.As(err, &rd) && rd.Addr != "" {
			a.f.leader.Store(&rd.Addr)
			continue
		}
		a.f.log.Debug("virtual agent session ended", "agent", a.index, "err", err)
		if time.Since(began) > 30*time.Second {
			delay = reconnectMin
		}
		if !wait.Sleep(ctx, jitter(delay)) {
			return
		}
		delay = min(2*delay, reconnectMax)
	}
}

// jitter draws a wait from [d/2, d].
func jitter(d time.Duration) time.Duration {
	var b [8]byte
	_, _ = rand.Read(b[:])
	half := int64(d / 2)
	return time.Duration(half + int64(uint64(b[0])|uint64(b[1])<<8|uint64(b[2])<<16)%(half+1))
}

// dialLeader dials first (the last leader), then the others in turn,
// following redirects, and returns the first session a leader accepted.
func (a *vagent) dialLeader(ctx context.Context, coordinators []string, first string) (*protocol.Session, string, error) {
	var errs []error
	order := append([]string{first}, coordinators...)
	tried := map[string]bool{}
	redirects := 0
	for i := 0; i < len(order); i++ {
		addr := order[i]
		if tried[addr] {
			continue
		}
		tried[addr] = true
		sess, err := a.f.dialer(a.index).Dial(ctx, addr, a.tls, protocol.ALPNAgent, &protocol.Config{
			Hello:          protocol.Hello{AgentID: a.id, Software: software, ModelVersion: a.version.Load()},
			Handler:        handler{a},
			MaxIdleTimeout: sessionTimeout, KeepAlivePeriod: defaultHeartbeat, HandshakeTimeout: handshakeTimeout,
		})
		if err == nil {
			return sess, addr, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		var rd *protocol.Redirect
		if errors.As(err, &rd) && rd.Addr != "" && redirects < maxRedirects {
			redirects++
			a.f.leader.Store(&rd.Addr)
			order = append(order[:i+1], append([]string{rd.Addr}, order[i+1:]...)...)
			delete(tried, rd.Addr)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", fmt.Errorf("sim.dialLeader: %w", errors.Join(errs...))
}

// session sends heartbeats until the session or ctx ends.
func (a *vagent) session(ctx context.Context, sess *protocol.Session) error {
	interval := sess.HelloAck().HeartbeatInterval
	if interval <= 0 {
		interval = defaultHeartbeat
	}
	// Spread the fleet's heartbeats over the interval.
	first := time.Duration(uint64(a.index) * 7919 % uint64(interval))
	t := time.NewTimer(first)
	defer t.Stop()
	var seq uint64
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sess.Done():
			return sess.Err()
		case <-t.C:
		}
		seq++
		a.mu.Lock()
		busy := a.round != nil
		a.mu.Unlock()
		hb := &protocol.Heartbeat{Seq: seq, Sent: time.Now(), ModelVersion: a.version.Load(), Busy: busy}
		if sess.Version() >= 3 {
			hb.Status = a.f.status(len(a.shard))
		}
		hctx, cancel := context.WithTimeout(ctx, max(interval, sessionTimeout))
		resp, err := sess.Request(hctx, hb)
		cancel()
		var rd *protocol.Redirect
		switch {
		case errors.As(err, &rd):
			return err
		case err != nil:
			if failures++; failures >= 2 {
				return fmt.Errorf("sim: %d heartbeats failed: %w", failures, err)
			}
		default:
			failures = 0
			if ann, ok := resp.(*protocol.ModelAnnounce); ok {
				// A virtual agent serves no inference: it takes the
				// announced version as served without downloading it.
				a.version.Store(ann.Version)
			}
		}
		t.Reset(interval)
	}
}

// handler serves what the coordinator pushes on a virtual agent's session.
type handler struct{ a *vagent }

var _ protocol.Handler = handler{}

func (h handler) Hello(context.Context, *protocol.Session, *protocol.Hello) (*protocol.HelloAck, error) {
	return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: "agents do not accept sessions"}
}

func (h handler) ServeMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	a := h.a
	switch v := m.(type) {
	case *protocol.RoundInvite:
		return a.onInvite(s, v), nil
	case *protocol.RoundPlan:
		a.onPlan(v)
		return nil, nil
	case *protocol.EvalRequest, *protocol.StatsRequest, *protocol.PrepRequest:
		return nil, nil // declined at the invite
	case *protocol.RoundAbort:
		a.onAbort(v)
		return nil, nil
	case *protocol.ModelAnnounce:
		a.version.Store(v.Version)
		return &protocol.Ack{}, nil
	}
	return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: m.Type().String()}
}

func (h handler) ServeBulk(context.Context, *protocol.Session, protocol.Message, *protocol.BulkStream) error {
	return &protocol.Error{Code: protocol.CodeUnsupported, Message: "agents accept no bulk streams"}
}

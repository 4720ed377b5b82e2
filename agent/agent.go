package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/tensor"
)

// Errors that end Run. Each is logged once with what the operator should do.
var (
	// ErrRevoked: the cluster refused the agent's certificate on several
	// consecutive connections (revoked, or unknown to the cluster).
	ErrRevoked = errors.New("agent: certificate revoked or not recognised by the cluster")
	// ErrCertExpired: the certificate expired before it could be renewed
	// (the agent was offline too long); enroll again with a new token.
	ErrCertExpired = errors.New("agent: certificate expired; enroll again with a new join token")
	// ErrTokenRejected: the coordinator refused the join token (unknown,
	// already used, or expired).
	ErrTokenRejected = errors.New("agent: join token rejected")
	// ErrNotEnrolled: the data dir holds no certificate and no join token
	// is configured.
	ErrNotEnrolled = errors.New("agent: not enrolled and no join token configured")
	// ErrAlreadyRun: Run was called twice; an Agent runs once.
	ErrAlreadyRun = errors.New("agent: Run called twice")
)

// Agent is the daemon of one host: its identity and store, its private
// data, the inference server and, while Run runs, the session with the
// coordinators. Create it with New and start it with Run.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	st       *store
	data     *localData
	win      window
	m        *metrics
	served   atomic.Pointer[servedModel]
	lines    servedLines // model lines besides the default one (lines.go)
	software string
	now      func() time.Time
	grace    time.Duration // added to round stage deadlines

	httpLn  net.Listener // nil when inference is disabled
	httpSrv *http.Server

	mu    sync.Mutex
	ident identityRecord
	cert  *x509.Certificate // parsed ident.cert; nil before enrollment
	roots *x509.CertPool
	// rounds are the rounds the agent joined, by ID: at most
	// Config.Jobs.concurrent(), of different jobs.
	rounds map[uint64]*roundState
	// abandoned is the round a restart interrupted, until the coordinator
	// has been told (0 for none).
	abandoned uint64
	runCtx    context.Context
	ran       bool
	stopping  bool // Run is shutting down: start no background work
	// declined are the model lines Config.Jobs.Models does not accept.
	declined map[string]bool

	dlMu sync.Mutex
	dl   *download // a model download that may resume
	// fetched is the last completed download: the training and serving
	// paths often want the same new version at once, and the second
	// waits on dlMu for the first rather than downloading it again.
	fetched *fetchedModel

	// saveErr says why the last model save to the store failed (nil
	// after a save that worked): /healthz reports it.
	saveErr atomic.Pointer[string]

	syncing    atomic.Bool // a served-model download is running
	syncFailed struct {    // the last rollout that failed, guarded by mu
		version uint64
		at      time.Time
	}
	bg          sync.WaitGroup // rounds and downloads
	trainerFail trainerFailure // guarded by mu
	// events holds the last warnings and errors logged, for the status
	// report (status.go).
	events *events

	// observeUpdate, if set (tests), sees each training round's update
	// vector before and after fixed-point encoding (and a statistics
	// round's encoded vector, with vec nil).
	observeUpdate func(vec []float32, x []uint32)
}

// New opens the agent's state in cfg.DataDir, loads its local dataset and
// binds the inference listener, so that a wrong path, a foreign or corrupt
// data dir, or a busy port fail here with a clear error. logger nil
// discards logs.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent.New: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	win, _ := parseWindow(cfg.TrainingWindow)
	ev := newEvents()
	a := &Agent{cfg: cfg, log: slog.New(&eventHandler{next: logger.Handler(), ev: ev}), events: ev,
		win: win, m: newMetrics(), software: software(), now: time.Now, grace: deadlineGrace,
		observeUpdate: cfg.OnUpdate}
	st, err := openStore(cfg.DataDir, storeLockWait)
	if err != nil {
		return nil, fmt.Errorf("agent.New: %w", err)
	}
	a.st = st
	if err := a.load(); err != nil {
		st.close()
		return nil, fmt.Errorf("agent.New: %w", err)
	}
	start := time.Now()
	if a.data, err = loadData(&cfg.Dataset); err != nil {
		st.close()
		return nil, fmt.Errorf("agent.New: %w", err)
	}
	nTrain, nHeld := a.data.sizes()
	features, _ := a.data.schema()
	logger.Info("local data loaded", "kind", cfg.Dataset.Kind, "train", nTrain,
		"held_out", nHeld, "features", features, "took", time.Since(start).Round(time.Millisecond))
	if a.data.raw != nil && a.data.raw.baseErr != nil {
		logger.Info("the CSV table needs a job's data.columns rules before training", "why", a.data.raw.baseErr)
	}
	if sm := a.served.Load(); sm != nil { // the stored model, quantized now that the data is here
		a.served.Store(a.serveQuantized(sm))
	}
	a.quantizeLines()
	if cfg.InferenceListen != "" {
		if a.httpLn, err = net.Listen("tcp", cfg.InferenceListen); err != nil {
			st.close()
			return nil, fmt.Errorf("agent.New: inference server: %w", err)
		}
		lim := cfg.InferenceLimits.withDefaults()
		reg, err := newAgentRegistry(cfg.Metrics, a.m, &a.served)
		if err != nil {
			st.close()
			a.httpLn.Close()
			return nil, fmt.Errorf("agent.New: metrics: %w", err)
		}
		srv := newInferenceServer(lim)
		srv.served, srv.m, srv.reg, srv.health, srv.classNames = &a.served, a.m, reg, a.health, a.data.classes
		srv.lines = &a.lines
		a.httpSrv = &http.Server{
			Handler:           srv.handler(),
			ReadHeaderTimeout: time.Duration(lim.ReadHeaderTimeout),
			ReadTimeout:       time.Duration(lim.ReadTimeout),
			WriteTimeout:      time.Duration(lim.WriteTimeout),
			IdleTimeout:       time.Duration(lim.IdleTimeout),
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		}
	}
	return a, nil
}

// load reads the identity, the served model and the round state from the
// store.
func (a *Agent) load() error {
	ident, ok, err := a.st.identity()
	if err != nil {
		return err
	}
	h, err := a.st.header()
	if err != nil {
		return err
	}
	if a.cfg.JoinToken != "" && h.pin != ([32]byte{}) {
		_, pin, _ := identity.ParseJoinToken(a.cfg.JoinToken)
		if pin != h.pin {
			return fmt.Errorf("%w: %s is enrolled in the cluster whose CA pin is %x, the join token is for %x",
				ErrForeignDataDir, a.cfg.DataDir, h.pin[:8], pin[:8])
		}
	}
	if ok {
		a.ident = ident
		if len(ident.cert) > 0 {
			if err := a.setCredentials(ident.cert, ident.ca, h.pin); err != nil {
				return err
			}
		}
	}
	for _, which := range [][]byte{keyCurrent, keyPrevious} {
		rec, err := a.st.model(which)
		if err != nil {
			return err
		}
		if rec == nil {
			continue
		}
		sm, err := newServedModel(a.st.files, rec)
		if err != nil {
			return fmt.Errorf("%w: stored model %d: %v", ErrCorruptStore, rec.version, err)
		}
		if string(which) == string(keyCurrent) {
			a.served.Store(sm)
		}
	}
	if err := a.loadLines(); err != nil {
		return err
	}
	p, inRound, c, err := a.st.roundState()
	if err != nil {
		return err
	}
	if inRound {
		a.log.Warn("a round was interrupted by a restart; its secrets are gone, so it is abandoned", "round", p.roundID, "stage", p.stage)
		if err := a.st.clearProgress(); err != nil {
			return err
		}
		c.failed++
		a.abandoned = p.roundID
	}
	a.m.roundsJoined.Store(c.joined)
	a.m.roundsCompleted.Store(c.completed)
	a.m.roundsFailed.Store(c.failed)
	a.m.bytesSent.Store(c.bytesSent)
	return nil
}

// setCredentials parses and checks a certificate and CA, and installs
// them. pin, if not zero, must match the CA.
func (a *Agent) setCredentials(certDER, caDER []byte, pin [32]byte) error {
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("%w: stored CA certificate: %v", ErrCorruptStore, err)
	}
	if pin != ([32]byte{}) && identity.Pin(ca) != pin {
		return fmt.Errorf("%w: stored CA does not match the cluster pin", ErrCorruptStore)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("%w: stored certificate: %v", ErrCorruptStore, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(a.ident.key.Public()) {
		return fmt.Errorf("%w: stored certificate is not for the stored key", ErrCorruptStore)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	a.mu.Lock()
	a.ident.cert, a.ident.ca = certDER, caDER
	a.cert, a.roots = cert, roots
	a.mu.Unlock()
	return nil
}

// software names this build in Hello messages.
func software() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "fedge-agent " + v + " " + runtime.Version()
}

// ID returns the agent's ID, empty until its identity exists (the first
// enrollment attempt creates it).
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ident.id
}

// ModelVersion returns the version of the model being served, 0 for none.
func (a *Agent) ModelVersion() uint64 {
	if s := a.served.Load(); s != nil {
		return s.version
	}
	return 0
}

// InferenceAddr returns the bound address of the inference server, or ""
// when it is disabled.
func (a *Agent) InferenceAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

func (a *Agent) health() healthResponse {
	a.mu.Lock()
	enrolled := a.cert != nil
	a.mu.Unlock()
	h := healthResponse{Status: "ok", ModelVersion: a.ModelVersion(), Connected: a.m.connected.Load(), Enrolled: enrolled}
	if reason := a.saveErr.Load(); reason != nil {
		h.Status, h.Reason = "degraded", *reason
	}
	return h
}

// noteSave records the outcome of saving model version to the store: a
// failure (a full disk) keeps the agent on its old model, and /healthz
// says so until a save works again.
func (a *Agent) noteSave(version uint64, err error) {
	if err == nil {
		a.saveErr.Store(nil)
		return
	}
	reason := fmt.Sprintf("saving model %d failed: %v", version, err)
	a.saveErr.Store(&reason)
}

// Run serves inference and takes part in the fleet until ctx ends, then
// finishes or abandons the current step within Config.ShutdownTimeout,
// closes the store and the inference listener, and returns nil. It
// returns early with ErrRevoked, ErrCertExpired, ErrTokenRejected or
// ErrNotEnrolled when the agent cannot be part of the cluster; inference
// stops then too. Run sets runtime.GOMAXPROCS to Config.Threads when that
// is positive. An Agent runs once.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.ran {
		a.mu.Unlock()
		return ErrAlreadyRun
	}
	a.ran = true
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.runCtx = runCtx
	a.mu.Unlock()
	if a.cfg.Threads > 0 {
		prev := runtime.GOMAXPROCS(a.cfg.Threads)
		a.log.Info("CPU limit", "threads", a.cfg.Threads, "was", prev)
	}
	httpDone := make(chan struct{})
	if a.httpSrv != nil {
		a.log.Info("inference server listening", "addr", a.InferenceAddr(), "model", a.ModelVersion())
		go func() {
			defer close(httpDone)
			if err := a.httpSrv.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("inference server stopped", "err", err)
			}
		}()
	} else {
		close(httpDone)
	}

	err := a.connLoop(runCtx)
	cancel()
	a.shutdown(httpDone)
	if err != nil {
		return fmt.Errorf("agent.Run: %w", err)
	}
	return nil
}

// shutdown waits, up to the shutdown timeout, for rounds, downloads and
// HTTP requests in flight, then closes the store.
func (a *Agent) shutdown(httpDone <-chan struct{}) {
	deadline := time.Now().Add(a.cfg.shutdownTimeout())
	a.mu.Lock()
	a.stopping = true // no new rounds or downloads from here on
	a.mu.Unlock()
	bgDone := make(chan struct{})
	go func() {
		a.bg.Wait()
		close(bgDone)
	}()
	select {
	case <-bgDone:
	case <-time.After(time.Until(deadline)):
		a.log.Warn("shutdown: abandoning the current round step after the timeout", "timeout", a.cfg.shutdownTimeout())
	}
	if a.httpSrv != nil {
		sctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
		if err := a.httpSrv.Shutdown(sctx); err != nil {
			a.httpSrv.Close()
		}
		cancel()
	}
	<-httpDone
	select {
	case <-bgDone:
		if err := a.st.close(); err != nil {
			a.log.Warn("closing the store", "err", err)
		}
	default:
		// A goroutine still holds the store; bbolt's close would wait for
		// its transaction. The process is exiting: every committed state
		// is already durable.
	}
	a.log.Info("agent stopped")
}

// Close releases the store and the inference listener of an Agent whose
// Run was never called. After Run it does nothing.
func (a *Agent) Close() error {
	a.mu.Lock()
	ran := a.ran
	a.ran = true
	a.mu.Unlock()
	if ran {
		return nil
	}
	if a.httpLn != nil {
		a.httpLn.Close()
	}
	return a.st.close()
}

// swapModel makes rec the served model, in the store (keeping the old one
// as previous) and then in the inference server.
func (a *Agent) swapModel(rec *modelRecord, m *tensor.Model) error {
	sm, err := servedFrom(rec, m)
	if err != nil {
		return fmt.Errorf("agent.swapModel: model %d: %w", rec.version, err)
	}
	err = a.st.promote(rec)
	a.noteSave(rec.version, err)
	if err != nil {
		return fmt.Errorf("agent.swapModel: saving model %d: %w", rec.version, err)
	}
	old := a.served.Swap(a.serveQuantized(sm))
	a.m.modelSwaps.Add(1)
	var oldV uint64
	if old != nil {
		oldV = old.version
	}
	a.log.Info("serving model", "version", rec.version, "hash", fmt.Sprintf("%x", rec.hash[:8]), "previous", oldV, "quantized", m.Spec.Quantize)
	return nil
}

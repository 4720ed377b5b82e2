package coordinator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedge/fedge/internal/telemetry"
)

// Timeouts of the metrics HTTP server: a scrape or a probe is one small
// request, so a client that holds a connection longer is dropped.
const (
	metricsReadTimeout  = 5 * time.Second
	metricsWriteTimeout = 30 * time.Second
	metricsIdleTimeout  = 60 * time.Second
)

// startMetrics serves /metrics, /healthz and /readyz over HTTP on addr.
// It runs from before the Raft replica opens (readyz says "starting"
// meanwhile) until Close.
func (n *Node) startMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("coordinator.startMetrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", telemetry.Handler(n.reg, n.log))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if why := n.notReady(); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", why)
			return
		}
		id, _ := n.rep.leader()
		fmt.Fprintf(w, "ready: leader %s\n", id)
	})
	n.metricsLn = ln
	n.metricsSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: metricsReadTimeout,
		ReadTimeout:       metricsReadTimeout,
		WriteTimeout:      metricsWriteTimeout,
		IdleTimeout:       metricsIdleTimeout,
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

// MetricsAddr is the bound address of the metrics HTTP server, "" when
// Config.MetricsListen is empty.
func (n *Node) MetricsAddr() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.Addr().String()
}

// notReady says why the node is not ready to serve, "" when it is: it
// must have opened its replica, be a voter of the cluster's latest
// configuration, and know a leader.
func (n *Node) notReady() string {
	if !n.ready.Load() {
		return "starting"
	}
	if n.ctx.Err() != nil {
		return "stopping"
	}
	f := n.rep.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "reading the cluster configuration: " + err.Error()
	}
	member := false
	servers := f.Configuration().Servers
	for _, s := range servers {
		member = member || (string(s.ID) == n.cfg.NodeID && s.Suffrage == raft.Voter)
	}
	switch {
	case !member && len(servers) > 0:
		return "not a voter of the cluster (removed, or not yet added)"
	case !member:
		return "not a member of a cluster yet (no bootstrap and not added)"
	}
	if id, _ := n.rep.leader(); id == "" {
		return "no leader elected"
	}
	return ""
}

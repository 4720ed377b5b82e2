package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// recordHandler keeps the records a slog.Logger writes.
type recordHandler struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// TestRaftLogsKeepTheirLevel: raft's hclog records reach slog with hclog's
// level (not guessed from the text), the bare message and the key-value
// pairs as attributes, also through a named sub-logger.
func TestRaftLogsKeepTheirLevel(t *testing.T) {
	var recs []slog.Record
	hl, sink := newHCLogger(slog.New(recordHandler{new(sync.Mutex), &recs}), "raft")
	hl.Info("peer said [ERROR] in its log", "peer", "c2")
	hl.Named("net").Error("failed to contact", "id", "c3", "err", errors.New("refused"))
	hl.Warn("heartbeat timeout reached")
	hl.Debug("a debug line")
	want := []struct {
		level  slog.Level
		msg    string
		logger string
		attr   string
	}{
		{slog.LevelInfo, "peer said [ERROR] in its log", "raft", "peer=c2"},
		{slog.LevelError, "failed to contact", "raft.net", "id=c3"},
		{slog.LevelWarn, "heartbeat timeout reached", "raft", ""},
		{slog.LevelDebug, "a debug line", "raft", ""},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		r := recs[i]
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		if r.Level != w.level || r.Message != w.msg || attrs["logger"] != w.logger {
			t.Errorf("record %d: %v %q logger %q, want %v %q logger %q", i, r.Level, r.Message, attrs["logger"], w.level, w.msg, w.logger)
		}
		if k, v, ok := strings.Cut(w.attr, "="); ok && attrs[k] != v {
			t.Errorf("record %d: attribute %s=%q, want %q (attrs %v)", i, k, attrs[k], v, attrs)
		}
	}
	// A node shutting down closes the streams raft reads: its errors then
	// are expected and go to debug, so a clean stop logs no ERROR.
	sink.stopping.Store(true)
	hl.Error("failed to decode incoming command", "error", "stream listener closed")
	if last := recs[len(recs)-1]; last.Level != slog.LevelDebug || last.Message != "failed to decode incoming command" {
		t.Errorf("while stopping: %v %q, want debug", last.Level, last.Message)
	}
}

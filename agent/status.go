package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fedge/fedge/protocol"
)

const (
	// maxEventText bounds one reported warning or error in bytes.
	maxEventText = 200
	// eventRepeat is how long a repeated warning or error is reported
	// once: the same text within it does not make a new event.
	eventRepeat = time.Minute
)

// events keeps the agent's last warnings and errors for its status
// report. It is fed by the agent's logger (eventHandler), so every WARN or
// ERROR the agent logs reaches the operator, rate-limited: a text already
// held from less than eventRepeat ago is not added again.
type events struct {
	mu   sync.Mutex
	ring []protocol.StatusEvent // oldest first, at most protocol.MaxStatusEvents
	// kick, if non-nil, is signalled (without blocking) when an event is
	// added, so the session sends its report now rather than at the next
	// heartbeat.
	kick chan struct{}
}

func newEvents() *events { return &events{kick: make(chan struct{}, 1)} }

// add records an event unless the same text is held from less than
// eventRepeat before at.
func (ev *events) add(at time.Time, level, text string) {
	text = truncateReason(strings.ToValidUTF8(text, "?"))
	ev.mu.Lock()
	for i := len(ev.ring) - 1; i >= 0; i-- {
		e := ev.ring[i]
		if e.Message == text && e.Level == level && at.Sub(e.At) < eventRepeat {
			ev.mu.Unlock()
			return
		}
	}
	if len(ev.ring) == protocol.MaxStatusEvents {
		copy(ev.ring, ev.ring[1:])
		ev.ring = ev.ring[:len(ev.ring)-1]
	}
	ev.ring = append(ev.ring, protocol.StatusEvent{At: at.UTC(), Level: level, Message: text})
	ev.mu.Unlock()
	select {
	case ev.kick <- struct{}{}:
	default:
	}
}

// kicks returns the channel signalled when an event is added (nil, which
// never fires, on a nil *events).
func (ev *events) kicks() <-chan struct{} {
	if ev == nil {
		return nil
	}
	return ev.kick
}

// list returns a copy of the held events, oldest first.
func (ev *events) list() []protocol.StatusEvent {
	if ev == nil {
		return nil
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.ring) == 0 {
		return nil
	}
	return append([]protocol.StatusEvent(nil), ev.ring...)
}

// eventHandler passes every record to next and keeps the text of WARN and
// ERROR records (message and attributes, as the log line reads) in ev.
type eventHandler struct {
	next   slog.Handler
	ev     *events
	prefix string // attributes added with WithAttrs, formatted
	group  string
}

var _ slog.Handler = (*eventHandler)(nil)

// Enabled implements slog.Handler: warnings are always seen, whatever the
// next handler's level.
func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		b.WriteString(r.Message)
		b.WriteString(h.prefix)
		r.Attrs(func(a slog.Attr) bool {
			writeAttr(&b, h.group, a)
			return b.Len() < maxEventText
		})
		level := "warn"
		if r.Level >= slog.LevelError {
			level = "error"
		}
		at := r.Time
		if at.IsZero() {
			at = time.Now()
		}
		h.ev.add(at, level, b.String())
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		writeAttr(&b, h.group, a)
	}
	return &eventHandler{next: h.next.WithAttrs(as), ev: h.ev, prefix: b.String(), group: h.group}
}

// WithGroup implements slog.Handler.
func (h *eventHandler) WithGroup(name string) slog.Handler {
	g := name
	if h.group != "" {
		g = h.group + "." + name
	}
	return &eventHandler{next: h.next.WithGroup(name), ev: h.ev, prefix: h.prefix, group: g}
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	b.WriteByte(' ')
	if group != "" {
		b.WriteString(group)
		b.WriteByte('.')
	}
	fmt.Fprintf(b, "%s=%v", a.Key, a.Value.Resolve())
}

// roundCount rounds an example count to two significant digits (54,321
// becomes 54,000; 87 stays 87): the status report says how much data an
// agent holds without the exact count, which training rounds send only
// under secure aggregation.
func roundCount(n int) uint64 {
	if n <= 0 {
		return 0
	}
	if n < 100 {
		return uint64(n)
	}
	p := math.Pow10(int(math.Floor(math.Log10(float64(n)))) - 1)
	return uint64(math.Round(float64(n)/p) * p)
}

// status is the report the agent sends with its heartbeats on sessions
// at protocol version 3 or later.
func (a *Agent) status() *protocol.AgentStatus {
	s := &protocol.AgentStatus{
		DataKind:        a.cfg.Dataset.Kind,
		TrainExamples:   roundCount(a.data.train.Len()),
		HeldOutExamples: roundCount(a.data.heldOut.Len()),
		Trainer:         "engine",
		Events:          a.events.list(),
	}
	if a.data.train.Len() > 0 {
		s.Features, s.Classes = uint32(a.data.train.Features()), uint32(a.data.train.Classes)
	}
	if a.data.text != nil {
		s.Features = 0 // documents: the width is each text model's input
	}
	if a.cfg.Trainer.enabled() {
		s.Trainer = "external"
	}
	s.TrainerFailure, s.TrainerFailureAt = a.LastTrainerFailure()
	if !s.TrainerFailureAt.IsZero() {
		s.TrainerFailureAt = s.TrainerFailureAt.UTC()
	}
	s.TrainerFailure = truncateReason(s.TrainerFailure)
	if !utf8.ValidString(s.TrainerFailure) {
		s.TrainerFailure = strings.ToValidUTF8(s.TrainerFailure, "?")
	}
	return s
}

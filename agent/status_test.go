package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
)

func TestRoundCount(t *testing.T) {
	tests := []struct {
		n    int
		want uint64
	}{{0, 0}, {-3, 0}, {87, 87}, {100, 100}, {149, 150}, {54321, 54000}, {59999, 60000}, {1_234_567, 1_200_000}}
	for _, tt := range tests {
		if got := roundCount(tt.n); got != tt.want {
			t.Errorf("roundCount(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

// TestEventsFromLog: warnings and errors logged through the agent's logger
// become status events with their attributes, info records do not, a
// repeat within eventRepeat is kept once, and the ring keeps the newest
// protocol.MaxStatusEvents.
func TestEventsFromLog(t *testing.T) {
	ev := newEvents()
	log := slog.New(&eventHandler{next: slog.DiscardHandler, ev: ev}).With("agent", "a1")
	log.Info("round done", "round", 1)
	log.Warn("left round", "round", 2, "err", errors.New("training: shapes differ"))
	log.Warn("left round", "round", 2, "err", errors.New("training: shapes differ"))
	log.WithGroup("sync").Error("download failed", "version", 3)
	got := ev.list()
	if len(got) != 2 {
		t.Fatalf("events %+v, want 2", got)
	}
	if got[0].Level != "warn" || got[0].Message != "left round agent=a1 round=2 err=training: shapes differ" {
		t.Errorf("first event %+v", got[0])
	}
	if got[1].Level != "error" || got[1].Message != "download failed agent=a1 sync.version=3" {
		t.Errorf("second event %+v", got[1])
	}
	select {
	case <-ev.kicks():
	default:
		t.Error("no kick after an event")
	}
	for i := range protocol.MaxStatusEvents + 3 {
		ev.add(time.Now(), "warn", strings.Repeat("x", i+1))
	}
	got = ev.list()
	if len(got) != protocol.MaxStatusEvents || len(got[len(got)-1].Message) != protocol.MaxStatusEvents+3 {
		t.Errorf("ring holds %d events, last %q", len(got), got[len(got)-1].Message)
	}
	long := strings.Repeat("é", 300)
	ev.add(time.Now(), "error", long)
	if m := ev.list()[protocol.MaxStatusEvents-1].Message; len(m) > maxEventText || !strings.HasPrefix(long, m) {
		t.Errorf("long event kept as %d bytes", len(m))
	}
	if (*events)(nil).list() != nil || (*events)(nil).kicks() != nil {
		t.Error("nil events not empty")
	}
}

// TestStatusFromVersion3: the agent sends its status report with its
// heartbeats to a coordinator that speaks version 3, and none to an older
// one (whose decoder would reject the trailer).
func TestStatusFromVersion3(t *testing.T) {
	for _, v := range []uint32{2, 3} {
		t.Run(fmt.Sprintf("version %d", v), func(t *testing.T) {
			c := newTestCoordVersion(t, nil, newHub(nil), v)
			ra := enrolledAgent(t, c, t.TempDir(), nil)
			if got := c.session(ra.ID()).Version(); got != v {
				t.Fatalf("session runs version %d, want %d", got, v)
			}
			testutil.WaitFor(t, 10*time.Second, "3 heartbeats", func() bool { return c.heartbeats.Load() >= 3 })
			st := c.status.Load()
			if v < 3 {
				if st != nil {
					t.Fatalf("a version %d coordinator got a status report %+v", v, st)
				}
				return
			}
			if st == nil || st.DataKind != "csv" || st.Features != 12 || st.Classes != 3 || st.Trainer != "engine" ||
				st.TrainExamples != 32 || st.HeldOutExamples != 8 {
				t.Fatalf("status report %+v", st)
			}
		})
	}
}

// TestConcurrentFromVersion6: the agent reports its jobs.concurrent (1
// when unset) in its heartbeats to a coordinator that speaks version 6,
// and nothing to a version 5 one (whose decoder would reject the trailer).
func TestConcurrentFromVersion6(t *testing.T) {
	for _, tc := range []struct {
		version    uint32
		concurrent int
		want       uint32
	}{{5, 3, 0}, {6, 0, 1}, {6, 3, 3}} {
		t.Run(fmt.Sprintf("version %d concurrent %d", tc.version, tc.concurrent), func(t *testing.T) {
			c := newTestCoordVersion(t, nil, newHub(nil), tc.version)
			ra := enrolledAgent(t, c, t.TempDir(), func(cfg *Config) { cfg.Jobs.Concurrent = tc.concurrent })
			if got := c.session(ra.ID()).Version(); got != tc.version {
				t.Fatalf("session runs version %d, want %d", got, tc.version)
			}
			testutil.WaitFor(t, 10*time.Second, "2 heartbeats", func() bool { return c.heartbeats.Load() >= 2 })
			if got := c.concurrent.Load(); got != tc.want {
				t.Fatalf("heartbeat reports %d rounds at once, want %d", got, tc.want)
			}
		})
	}
}

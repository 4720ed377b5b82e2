package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
)

// TestInferenceLimits: a client that sends its body a byte at a time is
// cut off after the read timeout, and requests beyond the cap get 503
// with Retry-After at once.
func TestInferenceLimits(t *testing.T) {
	_, blob := smallModel(t, 1)
	c := newTestCoord(t, nil, newHub(map[uint64][]byte{1: blob}))
	c.setTarget(1)
	ra := enrolledAgent(t, c, t.TempDir(), func(cfg *Config) {
		cfg.InferenceLimits = InferenceLimits{ReadTimeout: Duration(time.Second), MaxRequests: 2}
	})
	testutil.WaitFor(t, 10*time.Second, "the agent serves model 1", func() bool { return ra.ModelVersion() == 1 })
	addr := ra.InferenceAddr()
	slow := func() (net.Conn, chan struct{}) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "POST /v1/predict HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		return conn, stop
	}
	// Two slow bodies hold both slots: a third request is refused at once.
	for range 2 {
		_, stop := slow()
		defer close(stop)
	}
	var refused *http.Response
	testutil.WaitFor(t, 900*time.Millisecond, "503 while the slots are held", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		refused = resp
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if refused.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	// A slow body is cut off after the read timeout, though it keeps
	// sending.
	conn, stop := slow()
	defer close(stop)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(bufio.NewReader(conn))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow request still open after %v", time.Since(start))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("slow request cut off after %v, want about the 1s read timeout", took)
	}
}

// TestHealthzReportsFailedSave fills the agent's disk (its store may not
// grow) before a rollout: the agent keeps serving its old model, and
// /healthz answers 503 saying why.
func TestHealthzReportsFailedSave(t *testing.T) {
	spec := tensor.Spec{Name: "big", Input: []int{12}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 4000}, {Type: tensor.LayerDense, Units: 3}}}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCoord(t, nil, newHub(map[uint64][]byte{1: blob}))
	dir := t.TempDir()
	ra := enrolledAgent(t, c, dir, nil)
	cfg := ra.cfg
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	// Reopen the store capped at its current size: a full disk.
	fi, err := os.Stat(filepath.Join(cfg.DataDir, storeFile))
	if err != nil {
		t.Fatal(err)
	}
	a.st.close()
	if a.st, err = openStoreMax(cfg.DataDir, time.Second, int(fi.Size())); err != nil {
		t.Fatal(err)
	}
	// Model files cannot be created either (a file stands where their
	// directory should be: this fails even for root).
	full := filepath.Join(t.TempDir(), "full")
	if err := os.WriteFile(full, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a.st.files = &modelFiles{dir: full}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	health := func() (int, healthResponse) {
		var h healthResponse
		resp, err := http.Get("http://" + a.InferenceAddr() + "/healthz")
		if err != nil {
			return 0, h
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&h)
		return resp.StatusCode, h
	}
	if code, h := health(); code != http.StatusOK || h.Status != "ok" {
		t.Fatalf("healthz before the rollout: %d %+v", code, h)
	}
	c.setTarget(1)
	var h healthResponse
	testutil.WaitFor(t, 20*time.Second, "healthz 503 after the failed save", func() bool {
		var code int
		code, h = health()
		return code == http.StatusServiceUnavailable
	})
	if h.Status != "degraded" || !strings.Contains(h.Reason, "saving model 1") || a.ModelVersion() != 0 {
		t.Fatalf("healthz %+v, serving %d", h, a.ModelVersion())
	}
}

package protocol

import (
	"fmt"
	"testing"
)

// Many sessions dialed from one Dialer share its socket, each with its
// own identity, and closing the Dialer ends them.
func TestDialerSharesOneSocket(t *testing.T) {
	pki := newTestPKI(t, "ca")
	h := newAgentHandler()
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})
	d, err := NewDialer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 8
	var sessions []*Session
	for i := range n {
		id := fmt.Sprintf("agent-%d", i)
		s, err := d.Dial(testCtx(t), l.Addr().String(), pki.clientTLS(t, id), ALPNAgent, &Config{Hello: Hello{AgentID: id}})
		if err != nil {
			t.Fatalf("Dial %s: %v", id, err)
		}
		sessions = append(sessions, s)
	}
	for i, s := range sessions {
		if s.LocalAddr().String() != d.LocalAddr().String() {
			t.Fatalf("session %d from %v, want the dialer's %v", i, s.LocalAddr(), d.LocalAddr())
		}
		resp, err := s.Request(testCtx(t), &Heartbeat{Seq: uint64(i), ModelVersion: uint64(i)})
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if hb, ok := resp.(*Heartbeat); !ok || hb.ModelVersion != uint64(i)+1 {
			t.Fatalf("session %d: reply %+v", i, resp)
		}
		srv := h.session(fmt.Sprintf("agent-%d", i))
		if srv == nil || srv.RemoteAddr().String() != d.LocalAddr().String() {
			t.Fatalf("server sees session %d from %v", i, srv)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for i, s := range sessions {
		select {
		case <-s.Done():
		case <-testCtx(t).Done():
			t.Fatalf("session %d still open after the dialer closed", i)
		}
	}
}

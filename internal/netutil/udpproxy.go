package netutil

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// UDPProxy relays UDP datagrams between clients and one upstream address
// on loopback, and can drop everything on demand: to the peers of the
// upstream process it then looks killed with SIGKILL or frozen with
// SIGSTOP (no packet, no close, no ICMP), which an in-process test cannot
// otherwise do to a process it shares.
type UDPProxy struct {
	ln       *net.UDPConn
	upstream *net.UDPAddr
	dropping atomic.Bool

	mu    sync.Mutex
	flows map[string]*net.UDPConn // client address → socket towards upstream
	wg    sync.WaitGroup
}

// NewUDPProxy listens on listen (host:port) and relays to upstream until
// Close.
func NewUDPProxy(listen, upstream string) (*UDPProxy, error) {
	la, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("netutil.NewUDPProxy: %w", err)
	}
	ua, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		return nil, fmt.Errorf("netutil.NewUDPProxy: %w", err)
	}
	ln, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, fmt.Errorf("netutil.NewUDPProxy: %w", err)
	}
	p := &UDPProxy{ln: ln, upstream: ua, flows: map[string]*net.UDPConn{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address clients send to.
func (p *UDPProxy) Addr() string { return p.ln.LocalAddr().String() }

// Drop makes the proxy drop (true) or relay (false) every datagram.
func (p *UDPProxy) Drop(drop bool) { p.dropping.Store(drop) }

// Close stops relaying.
func (p *UDPProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.flows {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *UDPProxy) serve() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, client, err := p.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if p.dropping.Load() {
			continue
		}
		up, err := p.flow(client)
		if err != nil {
			continue
		}
		_, _ = up.Write(buf[:n])
	}
}

// flow returns the upstream socket of client, starting its return relay.
func (p *UDPProxy) flow(client *net.UDPAddr) (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.flows[client.String()]; ok {
		return c, nil
	}
	c, err := net.DialUDP("udp", nil, p.upstream)
	if err != nil {
		return nil, err
	}
	p.flows[client.String()] = c
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // ICMP unreachable while upstream restarts
			}
			if p.dropping.Load() {
				continue
			}
			_, _ = p.ln.WriteToUDP(buf[:n], client)
		}
	}()
	return c, nil
}

package node

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
)

// apiProxy relays TCP from GatewayIP:<port> to the API server on
// 127.0.0.1:<port>. The API server listens on loopback only, and an Endpoints
// address may not be loopback, so in RealNode mode it advertises GatewayIP
// and pods reach it through the kubernetes Service (kube-proxy DNATs
// 10.0.0.1:443 to GatewayIP:<port>) and this relay. TLS passes through
// untouched: the pods still verify the API server's certificate.
type apiProxy struct {
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func startAPIProxy(ctx context.Context, server string) (*apiProxy, error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(GatewayIP, u.Port()))
	if err != nil {
		return nil, err
	}
	// The relay lives until stop, not until the start context ends.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &apiProxy{ln: ln, cancel: cancel, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by stop
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.relay(ctx, c, u.Host)
			}()
		}
	}()
	return p, nil
}

func (p *apiProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *apiProxy) relay(ctx context.Context, client net.Conn, upstream string) {
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", upstream)
	if err != nil {
		_ = client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		p.track(client, false)
		p.track(server, false)
		_ = client.Close()
		_ = server.Close()
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Pass the half-close on, so each side sees the other's EOF.
		if tcp, ok := dst.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

// stop closes the listener and every relayed connection and waits for them.
func (p *apiProxy) stop() {
	p.cancel()
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

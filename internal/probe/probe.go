// Package probe sends real traffic between network namespaces: ICMP echo,
// and TCP round trips through a small echo server that reports the address a
// connection came from (which shows masquerading). Sockets are opened inside
// the namespace they belong to and then used from any goroutine, so no thread
// stays switched.
package probe

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping sends one ICMP echo request from the namespace at nsPath to dst and
// returns the round-trip time.
func Ping(nsPath string, dst net.IP, timeout time.Duration) (time.Duration, error) {
	network, laddr, typ := "ip4:icmp", "0.0.0.0", icmp.Type(ipv4.ICMPTypeEcho)
	proto := 1
	if dst.To4() == nil {
		network, laddr, typ, proto = "ip6:ipv6-icmp", "::", ipv6.ICMPTypeEchoRequest, 58
	}
	var conn *icmp.PacketConn
	err := netns.Do(nsPath, func() error {
		var err error
		conn, err = icmp.ListenPacket(network, laddr)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("opening an ICMP socket in %s: %w", nsPath, err)
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("knit-probe")}}
	wb, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := conn.WriteTo(wb, &net.IPAddr{IP: dst}); err != nil {
		return 0, fmt.Errorf("sending ICMP echo to %s: %w", dst, err)
	}
	deadline := start.Add(timeout)
	conn.SetReadDeadline(deadline)
	rb := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(rb)
		if err != nil {
			return 0, fmt.Errorf("no ICMP echo reply from %s within %s: %w", dst, timeout, err)
		}
		rm, err := icmp.ParseMessage(proto, rb[:n])
		if err != nil {
			continue
		}
		if echo, ok := rm.Body.(*icmp.Echo); ok && (rm.Type == ipv4.ICMPTypeEchoReply || rm.Type == ipv6.ICMPTypeEchoReply) &&
			echo.Seq == 1 && peer.(*net.IPAddr).IP.Equal(dst) {
			return time.Since(start), nil
		}
	}
}

// EchoServer is a TCP server inside a namespace that answers each line with
// the remote address it saw.
type EchoServer struct {
	ln   net.Listener
	Addr string // host:port it listens on
}

// ListenTCP starts an echo server in the namespace at nsPath on addr
// (e.g. "0.0.0.0:7777").
func ListenTCP(nsPath, addr string) (*EchoServer, error) {
	var ln net.Listener
	err := netns.Do(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s in %s: %w", addr, nsPath, err)
	}
	s := &EchoServer{ln: ln, Addr: ln.Addr().String()}
	go s.serve()
	return s, nil
}

func (s *EchoServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s\n", host)
		}(c)
	}
}

// Close stops the server.
func (s *EchoServer) Close() error { return s.ln.Close() }

// TCPRoundTrip connects from the namespace at nsPath to addr, sends a line
// and returns the source address the server saw and the round-trip time.
func TCPRoundTrip(nsPath, addr string, timeout time.Duration) (seenFrom string, rtt time.Duration, err error) {
	var c net.Conn
	start := time.Now()
	err = netns.Do(nsPath, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("connecting to %s from %s: %w", addr, nsPath, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "hello from knit\n"); err != nil {
		return "", 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", 0, fmt.Errorf("no answer from %s: %w", addr, err)
	}
	return line[:len(line)-1], time.Since(start), nil
}

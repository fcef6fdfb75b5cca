// Package api is the protocol between the dhcp IPAM plugin and the `knit
// dhcp` daemon: JSON over HTTP on a unix socket. It holds the wire types, the
// DHCP option names both sides accept, and a small client; it links no DHCP
// or server code, so the plugin binary stays lean.
//
//	POST /v1/allocate  Lease request → cni.Result (1.1.0 JSON) of the bound lease
//	POST /v1/release   Key → 204 (releasing an unknown lease is fine)
//	POST /v1/lease     Key → cni.Result of the bound lease, 404 if none
//	POST /v1/gc        GC → 204
//	GET  /v1/status    → 204 while the daemon serves
//
// Errors are a cni.Error JSON body with a non-2xx status.
package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/knit/dhcp.sock"

// Key identifies one lease: a container's interface on a network.
type Key struct {
	ContainerID string `json:"containerID"`
	Network     string `json:"network"`
	IfName      string `json:"ifName"`
}

// String is the lease's default DHCP client identifier, as the reference
// builds it: "containerID/network/ifName", at most 254 bytes.
func (k Key) String() string {
	s := k.ContainerID + "/" + k.Network + "/" + k.IfName
	if len(s) > 254 {
		s = s[:254]
	}
	return s
}

// Option is one DHCP option the client sends.
type Option struct {
	Code  uint8  `json:"code"`
	Value []byte `json:"value"`
}

// Lease asks for a lease on an interface inside a namespace.
type Lease struct {
	Key
	Netns string `json:"netns"`
	// Provide are options sent in every DISCOVER and REQUEST (client-id
	// and host-name among them when the config sets them).
	Provide []Option `json:"provide,omitempty"`
	// Request are the option codes asked for on top of the defaults.
	Request []int `json:"request,omitempty"`
	// SkipDefault leaves out the options the daemon requests by default
	// beyond what the DHCP library always asks for.
	SkipDefault bool `json:"skipDefault,omitempty"`
	// Priority is the metric put on the returned routes (0: none).
	Priority int `json:"priority,omitempty"`
}

// GC asks the daemon to release every lease of a network whose attachment
// is not listed.
type GC struct {
	Network string             `json:"network"`
	Keep    []cni.GCAttachment `json:"keep"`
}

// Option codes by the names the reference plugin (and dhcp-options(5))
// use; numbers are accepted too.
var optionNames = map[string]uint8{
	"subnet-mask": 1, "routers": 3, "router": 3, "domain-name-servers": 6, "domain-name-server": 6,
	"host-name": 12, "hostname": 12, "domain-name": 15, "static-routes": 33, "interface-mtu": 26,
	"ntp-servers": 42, "dhcp-lease-time": 51, "vendor-class-identifier": 60,
	"dhcp-client-identifier": 61, "client-id": 61, "domain-search": 119, "classless-static-routes": 121,
	"classless-route": 121, "user-class": 77,
}

// OptionCode resolves a DHCP option name or number.
func OptionCode(name string) (uint8, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if c, ok := optionNames[n]; ok {
		return c, nil
	}
	if v, err := strconv.ParseUint(n, 10, 8); err == nil && v > 0 && v < 255 {
		return uint8(v), nil
	}
	return 0, fmt.Errorf("unknown DHCP option %q: use a name like host-name, routers, classless-static-routes, or a number 1-254", name)
}

// Client talks to the daemon. It speaks just enough HTTP/1.0 itself (one
// request per connection, the answer read to EOF) that the plugin binary
// does not link net/http: that package and its TLS and crypto dependencies
// would add about 3.5 MB, 2 MB of RSS and 0.9 ms of start-up CPU to every
// knit plugin exec, not just dhcp's.
type Client struct {
	Socket string
	// DialTimeout bounds connecting; a daemon that is not running fails
	// within it.
	DialTimeout time.Duration
}

// NewClient returns a client for the daemon at socket.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	return &Client{Socket: socket, DialTimeout: 500 * time.Millisecond}
}

// Request methods the daemon serves.
const (
	MethodGet  = "GET"
	MethodPost = "POST"
)

// NotRunning is the error when nothing answers on the socket.
type NotRunning struct {
	Socket string
	Err    error
}

func (e *NotRunning) Error() string {
	return fmt.Sprintf("the knit DHCP daemon is not running on %s (%v): start it with `knit dhcp --socket %s`", e.Socket, e.Err, e.Socket)
}

// maxAnswer bounds the daemon's answer.
const maxAnswer = 1 << 20

// Do sends one request (in is JSON-encoded unless nil) and decodes a 200
// answer into out (unless nil). A daemon error comes back as *cni.Error; no
// daemon as *NotRunning.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	d := net.Dialer{Timeout: c.DialTimeout}
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return &NotRunning{Socket: c.Socket, Err: op.Err}
		}
		return fmt.Errorf("talking to the knit DHCP daemon on %s: %w", c.Socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	status, text, data, err := exchange(conn, method, path, body)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
			err = context.DeadlineExceeded // the socket's deadline is the context's
		}
		return fmt.Errorf("talking to the knit DHCP daemon on %s: %w", c.Socket, err)
	}
	if status/100 != 2 {
		var e cni.Error
		if json.Unmarshal(data, &e) == nil && e.Msg != "" {
			return &e
		}
		return cni.Errorf(cni.ErrInternal, "knit DHCP daemon answered %s: %s", text, strings.TrimSpace(string(data)))
	}
	if out != nil && status == 200 {
		if err := json.Unmarshal(data, out); err != nil {
			return cni.NewError(cni.ErrDecodingFailure, "cannot decode the knit DHCP daemon's answer", err.Error())
		}
	}
	return nil
}

// exchange writes one HTTP/1.0 request and reads the answer: the status
// code, the status line's text ("404 Not Found") and the body. HTTP/1.0
// means the server closes the connection after answering and never uses
// chunked encoding.
func exchange(conn net.Conn, method, path string, body []byte) (int, string, []byte, error) {
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.0\r\nHost: knit-dhcp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, len(body))
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, "", nil, err
	}
	r := bufio.NewReader(io.LimitReader(conn, maxAnswer+64<<10))
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, "", nil, fmt.Errorf("reading the status line: %w", err)
	}
	proto, text, ok := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	status, convErr := strconv.Atoi(strings.SplitN(text, " ", 2)[0])
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") || convErr != nil {
		return 0, "", nil, fmt.Errorf("not an HTTP answer: %q", line)
	}
	length := -1
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return 0, "", nil, fmt.Errorf("reading the answer's headers: %w", err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
				length = n
			}
		}
	}
	var data []byte
	switch {
	case length > maxAnswer:
		return 0, "", nil, fmt.Errorf("answer of %d bytes is over the %d-byte limit", length, maxAnswer)
	case length >= 0:
		data = make([]byte, length)
		_, err = io.ReadFull(r, data)
	default:
		data, err = io.ReadAll(io.LimitReader(r, maxAnswer))
	}
	if err != nil {
		return 0, "", nil, fmt.Errorf("reading the answer: %w", err)
	}
	return status, text, data, nil
}

// Result fetches a result-returning endpoint (allocate, lease).
func (c *Client) Result(ctx context.Context, path string, in any) (*cni.Result, error) {
	var raw json.RawMessage
	if err := c.Do(ctx, MethodPost, path, in, &raw); err != nil {
		return nil, err
	}
	r, err := cni.ParseResult(raw, cni.Version110)
	if err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot decode the lease the knit DHCP daemon returned", err.Error())
	}
	return r, nil
}

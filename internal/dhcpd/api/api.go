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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	Request []uint8 `json:"request,omitempty"`
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

// Client talks to the daemon.
type Client struct {
	Socket string
	// DialTimeout bounds connecting; a daemon that is not running fails
	// within it.
	DialTimeout time.Duration
	hc          *http.Client
}

// NewClient returns a client for the daemon at socket.
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	c := &Client{Socket: socket, DialTimeout: 500 * time.Millisecond}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: c.DialTimeout}
			return d.DialContext(ctx, "unix", c.Socket)
		},
		DisableKeepAlives: true,
	}}
	return c
}

// NotRunning is the error when nothing answers on the socket.
type NotRunning struct {
	Socket string
	Err    error
}

func (e *NotRunning) Error() string {
	return fmt.Sprintf("the knit DHCP daemon is not running on %s (%v): start it with `knit dhcp --socket %s`", e.Socket, e.Err, e.Socket)
}

// Do sends one request (in is JSON-encoded unless nil) and decodes a 200
// answer into out (unless nil). A daemon error comes back as *cni.Error; no
// daemon as *NotRunning.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://knit-dhcp"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return &NotRunning{Socket: c.Socket, Err: op.Err}
		}
		return fmt.Errorf("talking to the knit DHCP daemon on %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the knit DHCP daemon's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e cni.Error
		if json.Unmarshal(data, &e) == nil && e.Msg != "" {
			return &e
		}
		return cni.Errorf(cni.ErrInternal, "knit DHCP daemon answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return cni.NewError(cni.ErrDecodingFailure, "cannot decode the knit DHCP daemon's answer", err.Error())
		}
	}
	return nil
}

// Result fetches a result-returning endpoint (allocate, lease).
func (c *Client) Result(ctx context.Context, path string, in any) (*cni.Result, error) {
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodPost, path, in, &raw); err != nil {
		return nil, err
	}
	r, err := cni.ParseResult(raw, cni.Version110)
	if err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot decode the lease the knit DHCP daemon returned", err.Error())
	}
	return r, nil
}

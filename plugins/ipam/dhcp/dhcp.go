// Package dhcp is the dhcp IPAM plugin. It is only a client: it asks the
// `knit dhcp` daemon (package internal/dhcpd) over its unix socket for a
// lease on the container's interface, and returns it as the IPAM result.
// The daemon keeps the lease renewed and persisted; DEL releases it.
//
// Config (ipam section, as the reference): daemonSocketPath (default
// /run/knit/dhcp.sock); provide [{option, value | fromArg}] — options sent
// to the server, e.g. {"option":"host-name","fromArg":"K8S_POD_NAME"} or a
// client identifier; request [{option, skipDefault}] — options to ask for
// on top of the defaults (skipDefault on any entry drops the daemon's
// extra defaults); priority — the metric of the returned routes.
//
// When the daemon is not running, ADD, CHECK and DEL fail within about a
// second with a message saying to start `knit dhcp`, and STATUS fails with
// code 50.
package dhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/knit-cni/knit/internal/dhcpd/api"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

// Info describes the plugin.
var Info = skel.Info{
	Name:  "dhcp",
	About: "knit dhcp IPAM: leases from a DHCP server through the `knit dhcp` daemon",
}

// Plugin is the dhcp plugin.
var Plugin skel.Plugin = dhcpIPAM{}

type dhcpIPAM struct{}

var (
	_ skel.GCer     = dhcpIPAM{}
	_ skel.Statuser = dhcpIPAM{}
)

// AllocateTimeout bounds waiting for the daemon to acquire a lease.
const AllocateTimeout = 60 * time.Second

type confJSON struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	IPAM       *struct {
		DaemonSocketPath string `json:"daemonSocketPath"`
		Provide          []struct {
			Option  string `json:"option"`
			Value   string `json:"value"`
			FromArg string `json:"fromArg"`
		} `json:"provide"`
		Request []struct {
			Option      string `json:"option"`
			SkipDefault bool   `json:"skipDefault"`
		} `json:"request"`
		Priority int `json:"priority"`
	} `json:"ipam"`
}

// Config is a parsed request: where the daemon is and the lease to ask for.
type Config struct {
	Socket string
	Lease  api.Lease
}

func invalid(format string, args ...any) *cni.Error {
	return cni.Errorf(cni.ErrInvalidNetworkConfig, format, args...)
}

// LoadConfig parses the config and CNI_ARGS into the daemon request.
func LoadConfig(req *skel.Request) (*Config, error) {
	var c confJSON
	if err := json.Unmarshal(req.Config, &c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot decode the network config", err.Error())
	}
	if c.IPAM == nil {
		return nil, invalid(`missing "ipam": the dhcp plugin is an IPAM plugin`)
	}
	if c.Name == "" {
		return nil, invalid("the network config needs a name: it is part of the lease's client identifier")
	}
	cfg := &Config{Socket: c.IPAM.DaemonSocketPath, Lease: api.Lease{
		Key:      api.Key{ContainerID: req.ContainerID, Network: c.Name, IfName: req.IfName},
		Netns:    req.Netns,
		Priority: c.IPAM.Priority,
	}}
	if cfg.Socket == "" {
		cfg.Socket = api.DefaultSocket
	}
	var args *cni.Args
	for i, p := range c.IPAM.Provide {
		code, err := api.OptionCode(p.Option)
		if err != nil {
			return nil, invalid("ipam.provide[%d]: %v", i, err)
		}
		val := p.Value
		if p.FromArg != "" {
			if args == nil {
				// Only the keys fromArg names matter; others are the runtime's.
				pairs, err := cni.ParseArgs(req.Args)
				if err != nil {
					return nil, err
				}
				args = &cni.Args{Pairs: pairs}
			}
			v, ok := args.Get(p.FromArg)
			if !ok {
				continue // the runtime did not pass it: send nothing
			}
			val = v
		}
		if val == "" {
			if p.FromArg == "" {
				return nil, invalid("ipam.provide[%d] (%s): set value or fromArg", i, p.Option)
			}
			continue
		}
		if len(val) > 255 {
			return nil, invalid("ipam.provide[%d] (%s): value is %d bytes, a DHCP option holds at most 255", i, p.Option, len(val))
		}
		cfg.Lease.Provide = append(cfg.Lease.Provide, api.Option{Code: code, Value: []byte(val)})
	}
	for i, r := range c.IPAM.Request {
		if r.SkipDefault {
			cfg.Lease.SkipDefault = true
		}
		if r.Option == "" {
			continue
		}
		code, err := api.OptionCode(r.Option)
		if err != nil {
			return nil, invalid("ipam.request[%d]: %v", i, err)
		}
		cfg.Lease.Request = append(cfg.Lease.Request, int(code))
	}
	return cfg, nil
}

// daemonError turns a client error into the plugin's error.
func daemonError(op string, socket string, err error) error {
	var nr *api.NotRunning
	if errors.As(err, &nr) {
		return cni.NewError(cni.ErrPluginNotAvailable, fmt.Sprintf("dhcp %s: the knit DHCP daemon is not running on %s: start it with `knit dhcp --socket %s`", op, socket, socket), nr.Err.Error())
	}
	var ce *cni.Error
	if errors.As(err, &ce) {
		return ce
	}
	return cni.NewError(cni.ErrIOFailure, "dhcp "+op+": talking to the knit DHCP daemon failed", err.Error())
}

// Add asks the daemon for the interface's lease.
func (dhcpIPAM) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	cfg, err := LoadConfig(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, AllocateTimeout)
	defer cancel()
	res, err := api.NewClient(cfg.Socket).Result(ctx, "/v1/allocate", cfg.Lease)
	if err != nil {
		return nil, daemonError("ADD", cfg.Socket, err)
	}
	res.CNIVersion = req.Version
	return res, nil
}

// Del releases the interface's lease.
func (dhcpIPAM) Del(ctx context.Context, req *skel.Request) error {
	cfg, err := LoadConfig(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, AllocateTimeout)
	defer cancel()
	if err := api.NewClient(cfg.Socket).Do(ctx, api.MethodPost, "/v1/release", cfg.Lease.Key, nil); err != nil {
		return daemonError("DEL", cfg.Socket, err)
	}
	return nil
}

// Check verifies the daemon holds a bound lease for the interface and, with
// a prevResult, that its address is the one the result lists.
func (dhcpIPAM) Check(ctx context.Context, req *skel.Request) error {
	cfg, err := LoadConfig(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := api.NewClient(cfg.Socket).Result(ctx, "/v1/lease", cfg.Lease)
	if err != nil {
		return daemonError("CHECK", cfg.Socket, err)
	}
	if req.PrevResult == nil || len(res.IPs) == 0 {
		return nil
	}
	want := res.IPs[0].Address
	for _, ip := range req.PrevResult.IPs {
		if ip.Address.IP.Equal(want.IP) {
			return nil
		}
	}
	return cni.Errorf(cni.ErrUnknownContainer, "dhcp: the lease of %s is %s, which the attachment's result does not list", cfg.Lease.Key.String(), want.String())
}

// GC asks the daemon to release the network's leases not listed as valid.
// Without any attachments key it releases nothing.
func (dhcpIPAM) GC(ctx context.Context, req *skel.Request) error {
	var c confJSON
	if err := json.Unmarshal(req.Config, &c); err != nil {
		return cni.NewError(cni.ErrDecodingFailure, "cannot decode the network config", err.Error())
	}
	if req.NetConf.ValidAttachments == nil && req.NetConf.LegacyAttachments == nil {
		return nil
	}
	socket := api.DefaultSocket
	if c.IPAM != nil && c.IPAM.DaemonSocketPath != "" {
		socket = c.IPAM.DaemonSocketPath
	}
	ctx, cancel := context.WithTimeout(ctx, AllocateTimeout)
	defer cancel()
	g := api.GC{Network: c.Name, Keep: req.NetConf.Attachments()}
	if err := api.NewClient(socket).Do(ctx, api.MethodPost, "/v1/gc", g, nil); err != nil {
		return daemonError("GC", socket, err)
	}
	return nil
}

// Status fails with code 50 unless the daemon answers.
func (dhcpIPAM) Status(ctx context.Context, req *skel.Request) error {
	var c confJSON
	if err := json.Unmarshal(req.Config, &c); err != nil {
		return cni.NewError(cni.ErrDecodingFailure, "cannot decode the network config", err.Error())
	}
	socket := api.DefaultSocket
	if c.IPAM != nil && c.IPAM.DaemonSocketPath != "" {
		socket = c.IPAM.DaemonSocketPath
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := api.NewClient(socket).Do(ctx, api.MethodGet, "/v1/status", nil, nil); err != nil {
		var ce *cni.Error
		if errors.As(daemonError("STATUS", socket, err), &ce) && ce.Code == cni.ErrPluginNotAvailable {
			return ce
		}
		return cni.NewError(cni.ErrPluginNotAvailable, "dhcp STATUS: the knit DHCP daemon on "+socket+" does not answer", err.Error())
	}
	return nil
}

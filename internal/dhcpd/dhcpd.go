// Package dhcpd is the `knit dhcp` daemon: it acquires, renews and releases
// DHCPv4 leases for container interfaces on behalf of the dhcp IPAM plugin,
// which talks to it over a unix socket (package api).
//
// Each lease is keyed by container ID, network and interface name, and
// every DHCP exchange runs on a raw socket opened inside the container's
// network namespace. Leases are persisted, one JSON file each in the state
// directory, replaced atomically on every change, so a daemon restart keeps
// them: on start it reloads them, drops those whose namespace is gone, and
// renews the rest at once. A lease is renewed at T1, rebound at T2 and
// acquired again after it expires; DEL (release) sends a DHCPRELEASE and
// removes the file. Stopping the daemon releases nothing.
package dhcpd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/knit-cni/knit/internal/dhcpd/api"
	"github.com/knit-cni/knit/pkg/cni"
)

// DefaultStateDir is where leases are persisted unless told otherwise.
const DefaultStateDir = "/var/lib/knit/dhcp"

// Config configures a daemon.
type Config struct {
	SocketPath string // default api.DefaultSocket
	StateDir   string // default DefaultStateDir
	// Timeout bounds one DHCP message's wait for an answer (3 tries are
	// made); default 5s.
	Timeout time.Duration
	// RetryMin is the shortest wait before retrying a failed renewal or
	// acquisition; default 30s.
	RetryMin time.Duration
}

// Daemon is the DHCP lease daemon.
type Daemon struct {
	cfg    Config
	mu     sync.Mutex
	leases map[api.Key]*lease
	keys   map[api.Key]*sync.Mutex // serialises allocate/release per key
}

// New checks the configuration and prepares the state directory.
func New(cfg Config) (*Daemon, error) {
	if cfg.SocketPath == "" {
		cfg.SocketPath = api.DefaultSocket
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the lease directory %s: %w", cfg.StateDir, err)
	}
	return &Daemon{cfg: cfg, leases: map[api.Key]*lease{}, keys: map[api.Key]*sync.Mutex{}}, nil
}

// listen opens the unix socket, replacing a stale one but refusing to take
// over from a daemon that still answers.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another knit dhcp daemon is already serving on %s: stop it first or use --socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve reloads the persisted leases, serves the plugin's requests until
// ctx is done, then stops maintaining leases (without releasing them) and
// removes the socket.
func (d *Daemon) Serve(ctx context.Context) error {
	ln, err := listen(d.cfg.SocketPath)
	if err != nil {
		return err
	}
	loaded, err := d.load()
	if err != nil {
		ln.Close()
		return fmt.Errorf("reading the lease directory: %w", err)
	}
	for _, l := range loaded {
		if netnsGone(&l.rec) {
			// Nothing can send a RELEASE from a namespace that is gone; the
			// server's lease runs out on its own.
			slog.Info("dhcp: dropping persisted lease, its namespace is gone", "lease", l.rec.Key.String(), "netns", l.rec.Netns, "address", l.rec.Address)
			d.remove(l.rec.Key)
			continue
		}
		slog.Info("dhcp: reloaded lease; renewing", "lease", l.rec.Key.String(), "address", l.rec.Address, "expiry", l.rec.Expiry)
		d.start(l, true)
	}
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 5 * time.Second}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 4*d.cfg.Timeout)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	slog.Info("dhcp: serving", "socket", d.cfg.SocketPath, "stateDir", d.cfg.StateDir, "leases", len(d.leases))
	err = srv.Serve(ln)
	close(stopped)
	d.stopAll()
	os.Remove(d.cfg.SocketPath)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (d *Daemon) start(l *lease, renewNow bool) {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	d.mu.Lock()
	d.leases[l.rec.Key] = l
	d.mu.Unlock()
	go d.maintain(l, renewNow)
}

// stopAll stops every maintainer, keeping the leases on disk.
func (d *Daemon) stopAll() {
	d.mu.Lock()
	ls := d.leases
	d.leases = map[api.Key]*lease{}
	d.mu.Unlock()
	for _, l := range ls {
		close(l.stop)
		<-l.done
	}
}

// forget drops a lease whose namespace is gone (called by its maintainer).
func (d *Daemon) forget(l *lease) {
	d.mu.Lock()
	if d.leases[l.rec.Key] == l {
		delete(d.leases, l.rec.Key)
	}
	d.mu.Unlock()
	d.remove(l.rec.Key)
}

func (d *Daemon) keyLock(k api.Key) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.keys[k]
	if m == nil {
		m = &sync.Mutex{}
		d.keys[k] = m
	}
	return m
}

// detach removes k's lease from the daemon and stops its maintainer.
func (d *Daemon) detach(k api.Key) *lease {
	d.mu.Lock()
	l := d.leases[k]
	delete(d.leases, k)
	d.mu.Unlock()
	if l != nil {
		close(l.stop)
		<-l.done
	}
	return l
}

// Allocate returns the bound lease for req's key, acquiring one if there is
// none (or the one there is belongs to another namespace or has expired).
func (d *Daemon) Allocate(ctx context.Context, req api.Lease) (*cni.Result, error) {
	if req.ContainerID == "" || req.Network == "" || req.IfName == "" || req.Netns == "" {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "dhcp: a lease needs a container ID, network name, interface name and netns path (got %+v)", req.Key)
	}
	for _, c := range req.Request {
		if c < 1 || c > 254 {
			return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "dhcp: requested option %d is not a DHCP option code (1-254)", c)
		}
	}
	km := d.keyLock(req.Key)
	km.Lock()
	defer km.Unlock()
	d.mu.Lock()
	old := d.leases[req.Key]
	d.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		ok := old.rec.Netns == req.Netns && time.Now().Before(old.rec.Expiry)
		var res *cni.Result
		if ok {
			res = resultOf(old.cur.ACK, req.Priority)
		}
		old.mu.Unlock()
		if ok {
			return res, nil
		}
		d.releaseDetached(d.detach(req.Key))
	}
	if _, err := os.Stat(req.Netns); err != nil {
		return nil, cni.Errorf(cni.ErrInvalidNetNS, "dhcp: cannot use netns %s: %v", req.Netns, err)
	}
	actx, cancel := context.WithTimeout(ctx, 4*d.cfg.Timeout)
	defer cancel()
	nl, err := acquire(actx, &req, d.cfg.Timeout)
	if err != nil {
		return nil, cni.Errorf(cni.ErrTryAgainLater, "dhcp: no lease for %s on %s in %s: %v (is a DHCP server reachable from that interface?)",
			req.Key.String(), req.IfName, req.Netns, err)
	}
	l := &lease{rec: record{Lease: req, ClientID: req.Key.String()}}
	for _, o := range req.Provide {
		switch o.Code {
		case 12:
			l.rec.Hostname = string(o.Value)
		case 61:
			l.rec.ClientID = string(o.Value)
		}
	}
	l.setLease(nl)
	if err := d.save(l); err != nil {
		// Without the file a restart would lose the lease: give it back.
		if rerr := release(&req, nl, d.cfg.Timeout); rerr != nil {
			slog.Warn("dhcp: cannot release the lease that could not be saved", "err", rerr)
		}
		return nil, cni.NewError(cni.ErrIOFailure, "dhcp: cannot persist the lease: check --state-dir", err.Error())
	}
	slog.Info("dhcp: acquired lease", "lease", req.Key.String(), "address", l.rec.Address, "expiry", l.rec.Expiry)
	d.start(l, false)
	return resultOf(nl.ACK, req.Priority), nil
}

// Release gives k's lease back to the server and forgets it. An unknown
// lease is not an error.
func (d *Daemon) Release(k api.Key) error {
	km := d.keyLock(k)
	km.Lock()
	defer km.Unlock()
	d.releaseDetached(d.detach(k))
	return nil
}

func (d *Daemon) releaseDetached(l *lease) {
	if l == nil {
		return
	}
	if !netnsGone(&l.rec) {
		if err := release(&l.rec.Lease, l.cur, d.cfg.Timeout); err != nil {
			slog.Warn("dhcp: could not send DHCPRELEASE; the server's lease will expire on its own", "lease", l.rec.Key.String(), "err", err)
		}
	}
	d.remove(l.rec.Key)
	slog.Info("dhcp: released lease", "lease", l.rec.Key.String(), "address", l.rec.Address)
}

// Lease returns the result of k's bound lease, or a code 3 error.
func (d *Daemon) Lease(k api.Key, priority int) (*cni.Result, error) {
	d.mu.Lock()
	l := d.leases[k]
	d.mu.Unlock()
	if l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		if time.Now().Before(l.rec.Expiry) {
			return resultOf(l.cur.ACK, priority), nil
		}
	}
	return nil, cni.Errorf(cni.ErrUnknownContainer, "dhcp: no bound lease for %s", k.String())
}

// Renew renews k's lease now, whatever its schedule (for tests and
// operators); the maintainer continues from the new T1.
func (d *Daemon) Renew(ctx context.Context, k api.Key) (*cni.Result, error) {
	d.mu.Lock()
	l := d.leases[k]
	d.mu.Unlock()
	if l == nil {
		return nil, cni.Errorf(cni.ErrUnknownContainer, "dhcp: no lease for %s", k.String())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	nl, err := renew(ctx, &l.rec.Lease, l.cur, d.cfg.Timeout)
	if err != nil {
		return nil, cni.Errorf(cni.ErrTryAgainLater, "dhcp: renewing %s: %v", k.String(), err)
	}
	l.setLease(nl)
	if err := d.save(l); err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "dhcp: cannot persist the renewed lease", err.Error())
	}
	return resultOf(nl.ACK, l.rec.Priority), nil
}

// GC releases every lease of the network not in keep.
func (d *Daemon) GC(g api.GC) {
	keep := map[api.Key]bool{}
	for _, a := range g.Keep {
		keep[api.Key{ContainerID: a.ContainerID, Network: g.Network, IfName: a.IfName}] = true
	}
	d.mu.Lock()
	var drop []api.Key
	for k := range d.leases {
		if k.Network == g.Network && !keep[k] {
			drop = append(drop, k)
		}
	}
	d.mu.Unlock()
	for _, k := range drop {
		slog.Info("dhcp: GC releasing lease", "lease", k.String())
		d.Release(k)
	}
}

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/allocate", func(w http.ResponseWriter, r *http.Request) {
		var req api.Lease
		if decode(w, r, &req) {
			res, err := d.Allocate(r.Context(), req)
			reply(w, res, err)
		}
	})
	mux.HandleFunc("POST /v1/lease", func(w http.ResponseWriter, r *http.Request) {
		var req api.Lease
		if decode(w, r, &req) {
			res, err := d.Lease(req.Key, req.Priority)
			reply(w, res, err)
		}
	})
	mux.HandleFunc("POST /v1/release", func(w http.ResponseWriter, r *http.Request) {
		var k api.Key
		if decode(w, r, &k) {
			reply(w, nil, d.Release(k))
		}
	})
	mux.HandleFunc("POST /v1/gc", func(w http.ResponseWriter, r *http.Request) {
		var g api.GC
		if decode(w, r, &g) {
			d.GC(g)
			reply(w, nil, nil)
		}
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { reply(w, nil, nil) })
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		reply(w, nil, cni.NewError(cni.ErrDecodingFailure, "dhcp: cannot decode the request", err.Error()))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, res *cni.Result, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		e := cni.AsError(err, cni.ErrInternal)
		status := http.StatusInternalServerError
		switch e.Code {
		case cni.ErrUnknownContainer:
			status = http.StatusNotFound
		case cni.ErrDecodingFailure, cni.ErrInvalidNetworkConfig, cni.ErrInvalidNetNS:
			status = http.StatusBadRequest
		}
		w.WriteHeader(status)
		w.Write(e.JSON())
		return
	}
	if res == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	data, err := res.Encode(cni.Version110)
	if err != nil {
		reply(w, nil, err)
		return
	}
	w.Write(data)
}

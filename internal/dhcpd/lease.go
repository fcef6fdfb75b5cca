package dhcpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/knit-cni/knit/internal/dhcpd/api"
)

// record is a lease as persisted: one JSON file per lease in the state
// directory, replaced atomically on every change.
type record struct {
	api.Lease
	// ClientID is the client identifier sent, for people reading the file.
	ClientID string `json:"clientID"`
	Hostname string `json:"hostname,omitempty"`
	Address  string `json:"address"`
	// Offer and ACK are the raw DHCP packets the lease was built from.
	Offer    []byte    `json:"offer"`
	ACK      []byte    `json:"ack"`
	Acquired time.Time `json:"acquired"` // when the last ACK arrived
	Renew    time.Time `json:"renew"`    // T1
	Rebind   time.Time `json:"rebind"`   // T2
	Expiry   time.Time `json:"expiry"`
}

// lease is one live lease and the goroutine that keeps it.
type lease struct {
	mu  sync.Mutex // held across DHCP exchanges for this lease
	rec record
	cur *nclient4.Lease

	stop chan struct{} // closed to stop the maintainer
	done chan struct{} // closed when it has stopped
}

func fileName(k api.Key) string {
	sum := sha256.Sum256([]byte(k.String()))
	return hex.EncodeToString(sum[:16]) + ".json"
}

// setLease records a fresh ACK and computes T1, T2 and expiry (RFC 2131
// defaults: T1 = ½, T2 = ⅞ of the lease time when the server omits them).
func (l *lease) setLease(nl *nclient4.Lease) {
	l.cur = nl
	ack := nl.ACK
	lt := ack.IPAddressLeaseTime(time.Hour)
	t1 := ack.IPAddressRenewalTime(lt / 2)
	t2 := ack.IPAddressRebindingTime(lt * 7 / 8)
	if t1 <= 0 || t1 > lt {
		t1 = lt / 2
	}
	if t2 < t1 || t2 > lt {
		t2 = lt * 7 / 8
	}
	at := nl.CreationTime
	l.rec.Offer, l.rec.ACK = nl.Offer.ToBytes(), ack.ToBytes()
	l.rec.Address = ack.YourIPAddr.String()
	l.rec.Acquired = at
	l.rec.Renew, l.rec.Rebind, l.rec.Expiry = at.Add(t1), at.Add(t2), at.Add(lt)
}

// restore rebuilds the library lease from a record's packets.
func (l *lease) restore() error {
	offer, err := dhcpv4.FromBytes(l.rec.Offer)
	if err != nil {
		return fmt.Errorf("stored offer: %w", err)
	}
	ack, err := dhcpv4.FromBytes(l.rec.ACK)
	if err != nil {
		return fmt.Errorf("stored ACK: %w", err)
	}
	l.cur = &nclient4.Lease{Offer: offer, ACK: ack, CreationTime: l.rec.Acquired}
	return nil
}

// save writes the record atomically (temporary file, fsync, rename).
func (d *Daemon) save(l *lease) error {
	data, err := json.MarshalIndent(l.rec, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(d.cfg.StateDir, fileName(l.rec.Key))
	f, err := os.CreateTemp(d.cfg.StateDir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("saving lease: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("saving lease %s: %w", path, err)
	}
	return nil
}

func (d *Daemon) remove(k api.Key) {
	path := filepath.Join(d.cfg.StateDir, fileName(k))
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("dhcp: cannot remove lease file", "path", path, "err", err)
	}
}

// load reads every lease file in the state directory. Unreadable files
// are logged and moved aside so they never block the daemon.
func (d *Daemon) load() ([]*lease, error) {
	ents, err := os.ReadDir(d.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	var out []*lease
	for _, e := range ents {
		path := filepath.Join(d.cfg.StateDir, e.Name())
		if e.IsDir() || filepath.Ext(e.Name()) != ".json" {
			if len(e.Name()) > 5 && e.Name()[:5] == ".tmp-" {
				os.Remove(path) // a save that died
			}
			continue
		}
		l := &lease{}
		data, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(data, &l.rec)
		}
		if err == nil {
			err = l.restore()
		}
		if err != nil {
			slog.Warn("dhcp: ignoring unreadable lease file (renamed to .bad)", "path", path, "err", err)
			os.Rename(path, path+".bad")
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// netnsGone reports whether the lease's namespace or interface is gone, so
// no container can use the lease any more.
func netnsGone(rec *record) bool {
	_, err := os.Stat(rec.Netns)
	return errors.Is(err, os.ErrNotExist)
}

// maintain keeps one lease: renew at T1, rebind at T2, acquire again after
// expiry, until stopped or the container's namespace is gone. When renew
// is true it renews at once (after a daemon restart).
func (d *Daemon) maintain(l *lease, renewNow bool) {
	defer close(l.done)
	for {
		l.mu.Lock()
		if netnsGone(&l.rec) {
			l.mu.Unlock()
			slog.Info("dhcp: namespace gone, dropping lease", "lease", l.rec.Key.String(), "netns", l.rec.Netns, "address", l.rec.Address)
			d.forget(l)
			return
		}
		wait := d.step(l, renewNow)
		renewNow = false
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
		}
		t.Stop()
	}
}

// step does whatever the lease needs now and returns how long to sleep.
func (d *Daemon) step(l *lease, force bool) time.Duration {
	now := time.Now()
	rec := &l.rec
	switch {
	case now.After(rec.Expiry):
		ctx, cancel := context.WithTimeout(context.Background(), 4*d.cfg.Timeout)
		nl, err := acquire(ctx, &rec.Lease, d.cfg.Timeout)
		cancel()
		if err != nil {
			slog.Warn("dhcp: lease expired and a new one could not be acquired; retrying", "lease", rec.Key.String(), "err", err)
			return d.cfg.RetryMin
		}
		l.setLease(nl)
		slog.Info("dhcp: acquired a new lease after expiry", "lease", rec.Key.String(), "address", rec.Address)
	case force || now.After(rec.Renew):
		phase := "renew"
		if now.After(rec.Rebind) {
			phase = "rebind"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*d.cfg.Timeout)
		nl, err := renew(ctx, &rec.Lease, l.cur, d.cfg.Timeout)
		cancel()
		if err != nil {
			var nak *nclient4.ErrNak
			if errors.As(err, &nak) {
				// The server refuses the address: start over.
				slog.Warn("dhcp: server refused the lease; acquiring a new one", "lease", rec.Key.String())
				rec.Expiry = now
				return 0
			}
			// RFC 2131 4.4.5: retry after half the time left to the next
			// deadline (at least RetryMin).
			next := rec.Rebind
			if now.After(rec.Rebind) {
				next = rec.Expiry
			}
			wait := max(next.Sub(now)/2, d.cfg.RetryMin)
			slog.Warn("dhcp: "+phase+" failed; will retry", "lease", rec.Key.String(), "in", wait, "err", err)
			return wait
		}
		l.setLease(nl)
		slog.Info("dhcp: lease "+phase+"ed", "lease", rec.Key.String(), "address", rec.Address, "expiry", rec.Expiry)
	default:
		return time.Until(rec.Renew)
	}
	if err := d.save(l); err != nil {
		slog.Error("dhcp: cannot persist lease", "lease", rec.Key.String(), "err", err)
	}
	return time.Until(rec.Renew)
}

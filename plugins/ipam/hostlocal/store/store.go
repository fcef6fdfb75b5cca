// Package store is host-local's on-disk allocation store, in the reference
// plugin's layout so a host can switch implementations without losing
// allocations:
//
//	<dataDir>/<network>/<ip>                  one file per allocated address, "<containerID>\r\n<ifname>"
//	<dataDir>/<network>/last_reserved_ip.<N>  the last address reserved from range set N
//	<dataDir>/<network>/lock                  flock(2)ed around every operation
//
// knit adds one thing beside it, which the reference never reads:
//
//	<dataDir>/.knit/<network>/<ip>~<containerID>~<ifname>   "owner hint" files
//
// (An allocation knit makes has its hint as a second name of its address
// file: one inode. Hints knit adds for other files are empty.)
//
// Hints let ADD learn who owns which address from directory names alone, so
// an ADD reads file contents only for addresses without a single hint (files
// written by another implementation, legacy files). Beside them, an owner
// index and a seal (index.go) let an ADD skip listing the directory at all
// while knit is the only writer:
//
//	<dataDir>/.knit/<network>/owners/<containerID>~<ifname>   symlink to "<ip>[,<ip>…]"
//	<dataDir>/.knit/<network>/state                          the seal, or "dirty"
//
// Hints are only hints: an owner found through one is confirmed by reading the
// address file, and a hint whose address file is gone is removed.
//
// Crash safety. Every writer holds the lock, so whatever a writer leaves
// half-done is garbage to the next one. Reserve writes the owner into the
// hint first, then links the hint to the address's name (link fails if the
// name exists, like O_EXCL), so an address file is never torn and always
// has its hint: a plugin killed at any point leaves a stale hint (removed
// by the next Scan) or a complete allocation its owner's DEL finds. Where
// the hint cannot be written (no hint directory, a name over 255 bytes) the
// file is written beside the hints and linked into place, as before hints
// carried content; a temporary file left by a crash is removed by the next
// Scan. last_reserved_ip.N is written in place, as the reference does: it
// only says where the next search starts, and a torn one reads as absent.
//
// Boots. The hint directory also holds "boot_id", the kernel boot id
// (/proc/sys/kernel/random/boot_id) of the last operation on the network.
// When it differs from the running kernel's, every hinted allocation was made
// in an earlier boot; no container of an earlier boot still exists, so the
// plugin reclaims them (see Snapshot.Boot). Allocations without a hint (made
// by the reference plugin, which records no boot, since knit last looked)
// are left to DEL and GC: they may belong to a live container of this boot.
// A foreign file knit reads gets a hint then, so it too is recognised as
// older after the next reboot.
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

// Names of the reference layout.
const (
	LockFile           = "lock"
	LastReservedPrefix = "last_reserved_ip."
	// HintDir is the directory under dataDir holding knit's owner hints.
	HintDir   = ".knit"
	lineBreak = "\r\n"
	hintSep   = "~"
	// BootFile, in a network's hint directory, holds the boot id of the last
	// operation.
	BootFile = "boot_id"
	// tmpPrefix names temporary files in the hint directory.
	tmpPrefix = "tmp."
)

// BootIDPath is where the kernel publishes the current boot's id.
const BootIDPath = "/proc/sys/kernel/random/boot_id"

// StepHook, when set, is called at each step of Reserve with the step's name
// ("hint", "temp" on the fallback path, "link", "last"). Only fault-injection tests set it, to
// widen the window between steps; it is nil in the plugin.
var StepHook func(step string)

// Step calls StepHook if it is set.
func Step(name string) {
	if StepHook != nil {
		StepHook(name)
	}
}

// CurrentBoot returns the running kernel's boot id, or "" when it cannot be
// read (then no allocation is ever taken for one of an earlier boot).
func CurrentBoot() string { return bootOnce() }

func trimSpace(b []byte) string { return strings.TrimSpace(string(b)) }

// Owner is the attachment an address file names. IfName is empty for legacy
// files holding only a container ID; a zero Owner is an empty file.
type Owner struct {
	ContainerID string
	IfName      string
}

// IsZero reports whether the owner is unknown (an empty or blank file).
func (o Owner) IsZero() bool { return o.ContainerID == "" }

// Legacy reports whether the file named only a container ID.
func (o Owner) Legacy() bool { return o.ContainerID != "" && o.IfName == "" }

func (o Owner) String() string {
	if o.IfName == "" {
		return o.ContainerID
	}
	return o.ContainerID + "/" + o.IfName
}

// ParseOwner reads an address file's content as the reference does: trimmed,
// "<id>\r\n<ifname>", or a bare "<id>" in files of older versions.
func ParseOwner(data []byte) Owner {
	s := strings.TrimSpace(string(data))
	id, ifname, _ := strings.Cut(s, "\n")
	return Owner{ContainerID: strings.TrimSpace(id), IfName: strings.TrimSpace(ifname)}
}

// Format is the exact file content the reference writes.
func (o Owner) Format() string {
	return strings.TrimSpace(o.ContainerID) + lineBreak + o.IfName
}

// Store is one network's allocation directory, locked while open.
type Store struct {
	dir   string
	hints string
	lock  *os.File

	stateFD int            // the state file, open from Open to Close (-1: none)
	trusted bool           // the seal held at Open (index.go)
	indexOK bool           // the owner index matches the directory
	noSeal  bool           // the state could not be marked dirty: never seal
	dirty   bool           // this operation has marked the state dirty
	lastRx  map[int]string // last_reserved_ip.N contents seen or written
}

func ioErr(msg string, err error) *cni.Error {
	return cni.NewError(cni.ErrIOFailure, msg, err.Error())
}

// Open creates the network's directories if needed and takes its lock,
// waiting while another process holds it. Close releases it.
func Open(dataDir, network string) (*Store, error) {
	if network == "" || network == "." || network == ".." || strings.ContainsAny(network, "/\x00") {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "invalid network name for the host-local data directory", fmt.Sprintf("%q", network))
	}
	s := &Store{dir: filepath.Join(dataDir, network), hints: filepath.Join(dataDir, HintDir, network), lastRx: map[int]string{}, stateFD: -1}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, ioErr("cannot create the host-local data directory: check dataDir and permissions", err)
	}
	if err := os.MkdirAll(s.hints, 0o755); err != nil {
		// Hints are an optimisation: without them every file is read.
		slog.Warn("host-local: cannot create the owner-hint directory; continuing without hints", "dir", s.hints, "err", err)
		s.hints = ""
	}
	// Mode and flags as the reference's go-filemutex creates the lock file.
	f, err := os.OpenFile(filepath.Join(s.dir, LockFile), os.O_CREATE|os.O_RDONLY, 0o750)
	if err != nil {
		return nil, ioErr("cannot open the host-local lock file", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, ioErr("cannot lock the host-local data directory "+s.dir, err)
	}
	s.lock = f
	s.checkSeal()
	return s, nil
}

// Peek scans a network's directory without creating or locking anything (a
// missing directory is an empty snapshot). It is for read-only questions
// like STATUS, where a snapshot a moment old is good enough.
func Peek(dataDir, network string) (*Snapshot, error) {
	s := &Store{dir: filepath.Join(dataDir, network), hints: filepath.Join(dataDir, HintDir, network), lastRx: map[int]string{}, stateFD: -1}
	if _, err := os.Stat(s.dir); errors.Is(err, os.ErrNotExist) {
		return &Snapshot{Allocated: map[netip.Addr][]Owner{}}, nil
	}
	return s.scan(false)
}

// Dir is the network's directory.
func (s *Store) Dir() string { return s.dir }

// Close seals the directory if this operation changed it and the owner
// index matches it (see index.go), then releases the lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	if s.dirty && s.indexOK && !s.noSeal {
		s.writeSeal()
	}
	s.closeState()
	err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	s.lock = nil
	return err
}

// Snapshot is what the directory names say, read once per operation.
type Snapshot struct {
	// Allocated maps every address with a file to the owners its hints claim
	// (none for files without a hint).
	Allocated map[netip.Addr][]Owner
	// StaleHints are hints whose address file is gone.
	StaleHints []Hint
	// Boot is the boot id recorded by the last operation ("" when none was
	// recorded: a new directory, or one only other implementations used).
	Boot string
}

// FromEarlierBoot reports whether the hinted allocations in the snapshot
// were made in an earlier boot than current.
func (s *Snapshot) FromEarlierBoot(current string) bool {
	return s.Boot != "" && current != "" && s.Boot != current
}

// Hint is one owner hint.
type Hint struct {
	Addr  netip.Addr
	Owner Owner
}

func (h Hint) name() string {
	return h.Addr.String() + hintSep + h.Owner.ContainerID + hintSep + h.Owner.IfName
}

func parseHint(name string) (Hint, bool) {
	ip, rest, ok := strings.Cut(name, hintSep)
	if !ok {
		return Hint{}, false
	}
	id, ifname, ok := strings.Cut(rest, hintSep)
	if !ok || id == "" || ifname == "" {
		return Hint{}, false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Hint{}, false
	}
	return Hint{Addr: a, Owner: Owner{ContainerID: id, IfName: ifname}}, true
}

// AddrFromName returns the address a file in the network directory is named
// by; other names (lock, last_reserved_ip.N, garbage) are not addresses.
func AddrFromName(name string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(name)
	if err != nil || a.Zone() != "" || a.String() != name {
		return netip.Addr{}, false
	}
	return a, true
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// Scan lists the network directory and the hint directory once each.
// Names that are neither addresses nor the reference's own files are
// skipped (and logged), so garbage never blocks allocation; temporary files
// a killed writer left are removed.
func (s *Store) Scan() (*Snapshot, error) { return s.scan(true) }

func (s *Store) scan(locked bool) (*Snapshot, error) {
	names, err := readNames(s.dir)
	if err != nil {
		return nil, ioErr("cannot list the host-local data directory", err)
	}
	snap := &Snapshot{Allocated: make(map[netip.Addr][]Owner, len(names))}
	for _, n := range names {
		if a, ok := AddrFromName(n); ok {
			snap.Allocated[a] = nil
		} else if k, ok := strings.CutPrefix(n, LastReservedPrefix); ok {
			if i, err := strconv.Atoi(k); err == nil && locked {
				s.readLast(i) // for the seal (index.go)
			}
		} else if n != LockFile {
			slog.Debug("host-local: skipping unknown file in data directory", "dir", s.dir, "name", n)
		}
	}
	var hints []string
	if s.hints != "" {
		if hints, err = readNames(s.hints); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, ioErr("cannot list the host-local owner hints", err)
		}
	}
	for _, n := range hints {
		if n == BootFile {
			if b, err := readSmall(filepath.Join(s.hints, n)); err == nil {
				snap.Boot = strings.TrimSpace(string(b))
			}
			continue
		}
		if strings.HasPrefix(n, tmpPrefix) {
			if locked {
				// Every writer holds the lock: a temporary file seen under
				// it belongs to a writer that died.
				os.Remove(filepath.Join(s.hints, n))
			}
			continue
		}
		h, ok := parseHint(n)
		if !ok {
			continue
		}
		if owners, ok := snap.Allocated[h.Addr]; ok {
			snap.Allocated[h.Addr] = append(owners, h.Owner)
		} else {
			snap.StaleHints = append(snap.StaleHints, h)
		}
	}
	return snap, nil
}

// ReadOwner reads the owner of a's file. A missing file is os.ErrNotExist.
func (s *Store) ReadOwner(a netip.Addr) (Owner, error) {
	// Owner files are tiny; the read is capped so a huge garbage file
	// costs nothing.
	data, err := readSmall(filepath.Join(s.dir, a.String()))
	if err != nil {
		return Owner{}, err
	}
	return ParseOwner(data), nil
}

// Age returns how long ago a's file was last modified.
func (s *Store) Age(a netip.Addr) (time.Duration, error) {
	fi, err := os.Stat(filepath.Join(s.dir, a.String()))
	if err != nil {
		return 0, err
	}
	return time.Since(fi.ModTime()), nil
}

// Reserve creates a's file for owner if no file exists, records a as the last
// address reserved from range set setIndex, and writes the owner hint (before
// the file, see the package doc). It reports false, nil when the address is
// already taken.
func (s *Store) Reserve(a netip.Addr, owner Owner, setIndex int) (bool, error) {
	path := filepath.Join(s.dir, a.String())
	if _, err := os.Lstat(path); err == nil {
		return false, nil
	}
	s.markDirty()
	hint := Hint{Addr: a, Owner: owner}
	ok, err := s.createFromHint(hint, path, owner.Format())
	if !ok || err != nil {
		s.RemoveHint(hint)
		return false, err
	}
	Step("link")
	s.indexAdd(owner, a)
	// Written in place, as the reference does: it only says where the next
	// search starts, and a torn one (a crash mid-write) reads as absent, so
	// the atomic replace (a temporary file, its mode, a rename: two more
	// inode operations on every ADD) buys nothing here.
	last := filepath.Join(s.dir, LastReservedPrefix+strconv.Itoa(setIndex))
	if err := writeInPlace(last, a.String()); err != nil {
		s.Release(a, []Owner{owner})
		return false, ioErr("cannot write "+last, err)
	}
	s.lastRx[setIndex] = a.String()
	Step("last")
	return true, nil
}

// createFromHint writes the hint with content and links it into place as
// path: the address file and its hint are one inode, made whole before
// path exists, so the file is never seen torn and an ADD creates one inode
// (a crash before the link leaves a stale hint, which the next scan
// removes). Without a usable hint it writes an empty hint, when it can, and
// creates path as create does. It reports false, nil if path exists.
func (s *Store) createFromHint(h Hint, path, content string) (bool, error) {
	name := h.name()
	if s.hints == "" || h.Owner.IfName == "" || len(name) > 255 {
		s.AddHint(h)
		Step("hint")
		return s.create(path, content)
	}
	hp := filepath.Join(s.hints, name)
	err := writeInPlace(hp, content)
	Step("hint")
	if err == nil {
		err = os.Link(hp, path)
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		if err == nil {
			return true, nil
		}
	}
	slog.Debug("host-local: cannot link the address file from its hint; writing it directly", "path", path, "err", err)
	s.AddHint(h)
	return s.create(path, content)
}

// create makes path with content, failing (false, nil) if it exists. The
// content goes into a temporary file first, linked into place, so the file
// is never seen torn; without a usable hint directory it falls back to
// O_EXCL and a write.
func (s *Store) create(path, content string) (bool, error) {
	if s.hints != "" {
		tmp, err := s.writeTemp(content)
		if err == nil {
			Step("temp")
			err = os.Link(tmp, path)
			os.Remove(tmp)
			if errors.Is(err, os.ErrExist) {
				return false, nil
			}
			if err == nil {
				return true, nil
			}
		}
		slog.Debug("host-local: cannot link the address file into place; writing it directly", "path", path, "err", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, ioErr("cannot create the address file "+path, err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, ioErr("cannot write the address file "+path, err)
	}
	return true, nil
}

// writeTemp writes content to a new temporary file in the hint directory.
func (s *Store) writeTemp(content string) (string, error) {
	f, err := os.CreateTemp(s.hints, tmpPrefix+"*")
	if err != nil {
		return "", err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// replaceFile replaces path's content atomically where it can (a temporary
// file renamed over it), else by writing it in place.
func (s *Store) replaceFile(path, content string) error {
	if s.hints != "" {
		if tmp, err := s.writeTemp(content); err == nil {
			if err = os.Rename(tmp, path); err == nil {
				return nil
			}
			os.Remove(tmp)
		}
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// MarkBoot records boot as the boot of the network's allocations. Without a
// hint directory there is nowhere to record it, and nothing is reclaimed by
// boot.
func (s *Store) MarkBoot(boot string) {
	if s.hints == "" || boot == "" {
		return
	}
	if err := s.replaceFile(filepath.Join(s.hints, BootFile), boot+"\n"); err != nil {
		slog.Warn("host-local: cannot record the boot id", "dir", s.hints, "err", err)
	}
}

// AddHint writes an owner hint. Failing to is not an error: a missing hint
// only costs a file read later.
func (s *Store) AddHint(h Hint) {
	if s.hints == "" || h.Owner.IfName == "" {
		return
	}
	name := h.name()
	if len(name) > 255 {
		return
	}
	f, err := os.OpenFile(filepath.Join(s.hints, name), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		slog.Warn("host-local: cannot write owner hint", "hint", name, "err", err)
		return
	}
	f.Close()
}

// RemoveHint removes one hint; a missing hint is fine.
func (s *Store) RemoveHint(h Hint) error {
	if s.hints == "" {
		return nil
	}
	err := os.Remove(filepath.Join(s.hints, h.name()))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return ioErr("cannot remove owner hint", err)
	}
	return nil
}

// Release removes a's hints (those listed) and then its file. A missing file
// is fine.
func (s *Store) Release(a netip.Addr, hints []Owner) error {
	s.markDirty()
	for _, o := range hints {
		if err := s.RemoveHint(Hint{Addr: a, Owner: o}); err != nil {
			return err
		}
		s.indexRemove(o, a)
	}
	path := filepath.Join(s.dir, a.String())
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return ioErr("cannot remove the address file "+path, err)
	}
	return nil
}

// LastReserved returns the last address reserved from range set setIndex, if
// the file exists and holds an address.
func (s *Store) LastReserved(setIndex int) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s.readLast(setIndex))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

package store

// The owner index and the seal: how an ADD avoids listing the directory.
//
//	<dataDir>/.knit/<network>/owners/<containerID>~<ifname>   symlink; its target lists the owner's addresses, comma-separated
//	<dataDir>/.knit/<network>/state                          the seal, or "dirty"
//
// Listing a network's directory costs ~1.4 ms at 1,000 allocations (two
// directories, ~2,000 names). An ADD needs the listing for one question only:
// does this attachment already hold addresses? (Free addresses need no list:
// Reserve fails on a taken one, and the search from last_reserved_ip probes
// names one by one.) The owner index answers it with one readlink.
//
// The index is complete only while knit alone has written the directory, so
// every knit operation that changes it first writes "dirty" into the state
// file (in place: no new inode), and on Close, if the index is known to match
// the directory, writes the seal: the boot id, the directory's inode, change
// and modification times, and the last_reserved_ip.N contents it saw. Open
// compares the seal with the directory; any difference (another
// implementation created or removed a file, a knit process died mid-way, a
// reboot, an older knit) makes the store untrusted, and the plugin falls
// back to the full scan, which rebuilds the index and seals again.
//
// One case the seal cannot see: another implementation creating a file in
// the same clock tick (jiffy) as knit's last change leaves the directory's
// times unchanged. Its ADD also rewrites last_reserved_ip.N, which the seal
// covers, so only an allocation of exactly the address knit reserved last
// (impossible while knit's allocation holds it) slips through; and even then
// the cost is limited to a repeated ADD of that one attachment getting a
// second address instead of its first.
// Index entries are checked against the address files before use, so an
// entry another implementation's DEL made stale is ignored and repaired.

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// OwnersDir, in a network's hint directory, holds the owner index.
	OwnersDir = "owners"
	// StateFile, in a network's hint directory, holds the seal.
	StateFile  = "state"
	sealMagic  = "knit-host-local-seal/1"
	dirtyState = "dirty\n"
	// maxTarget bounds an index entry's symlink target (PATH_MAX - 1).
	maxTarget = 4095
)

// seal is what the state file records.
type seal struct {
	boot   string
	ino    uint64
	mtime  int64 // ns
	ctime  int64 // ns
	lastRx map[int]string
}

func (z seal) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s boot=%s ino=%d mtime=%d ctime=%d", sealMagic, z.boot, z.ino, z.mtime, z.ctime)
	keys := make([]int, 0, len(z.lastRx))
	for k := range z.lastRx {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " last%d=%s", k, z.lastRx[k])
	}
	b.WriteByte('\n')
	return b.String()
}

func parseSeal(s string) (seal, bool) {
	f := strings.Fields(s)
	if len(f) < 5 || f[0] != sealMagic {
		return seal{}, false
	}
	z := seal{lastRx: map[int]string{}}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return seal{}, false
		}
		var err error
		switch {
		case k == "boot":
			z.boot = v
		case k == "ino":
			z.ino, err = strconv.ParseUint(v, 10, 64)
		case k == "mtime":
			z.mtime, err = strconv.ParseInt(v, 10, 64)
		case k == "ctime":
			z.ctime, err = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(k, "last"):
			var n int
			if n, err = strconv.Atoi(k[len("last"):]); err == nil {
				z.lastRx[n] = v
			}
		default:
			return seal{}, false
		}
		if err != nil {
			return seal{}, false
		}
	}
	return z, z.boot != ""
}

// dirStamp reads the directory's inode and times.
func dirStamp(dir string) (ino uint64, mtime, ctime int64, err error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, 0, 0, err
	}
	return st.Ino, st.Mtim.Nano(), st.Ctim.Nano(), nil
}

// checkSeal sets s.trusted when the state file's seal matches the directory
// and the running boot. It caches the last_reserved_ip contents it reads.
func (s *Store) checkSeal() {
	if s.hints == "" {
		return
	}
	fd, err := openRetry(filepath.Join(s.hints, StateFile), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return
	}
	s.stateFD = fd
	buf := make([]byte, 1024)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return
	}
	data := buf[:n]
	z, ok := parseSeal(string(data))
	if !ok || z.boot != CurrentBoot() {
		return
	}
	ino, mtime, ctime, err := dirStamp(s.dir)
	if err != nil || ino != z.ino || mtime != z.mtime || ctime != z.ctime {
		return
	}
	for i, want := range z.lastRx {
		if got := s.readLast(i); got != want {
			return
		}
	}
	// (readLast kept every sealed entry in s.lastRx: the next seal covers
	// them too.)
	s.trusted, s.indexOK = true, true
}

// Trusted reports whether the owner index is complete: only knit has changed
// the network directory since it was last sealed, in this boot. Then
// Indexed answers which addresses an attachment holds without a Scan.
func (s *Store) Trusted() bool { return s.trusted }

// markDirty records, before the first change of this operation, that the
// seal no longer holds: a process killed from here on leaves "dirty".
func (s *Store) markDirty() {
	if s.dirty || s.hints == "" {
		return
	}
	s.dirty = true
	if s.stateFD < 0 {
		s.noSeal = true
		return
	}
	if err := pwriteAll(s.stateFD, []byte(dirtyState)); err != nil {
		// An old seal may still be in the file: never write a new one
		// over a state this operation could not mark.
		slog.Debug("host-local: cannot mark the state dirty", "err", err)
		s.noSeal = true
	}
}

// closeState closes the state file.
func (s *Store) closeState() {
	if s.stateFD >= 0 {
		unix.Close(s.stateFD)
		s.stateFD = -1
	}
}

// writeSeal seals the directory as it is now (see the file comment). It is
// called from Close, under the lock, after every change of the operation.
func (s *Store) writeSeal() {
	boot := CurrentBoot()
	ino, mtime, ctime, err := dirStamp(s.dir)
	if err != nil || boot == "" {
		return
	}
	z := seal{boot: boot, ino: ino, mtime: mtime, ctime: ctime, lastRx: s.lastRx}.String()
	err = pwriteAll(s.stateFD, []byte(z))
	if err == nil {
		err = unix.Ftruncate(s.stateFD, int64(len(z)))
	}
	if err != nil {
		slog.Debug("host-local: cannot seal the data directory", "err", err)
	}
}

// readLast reads last_reserved_ip.i as text ("" when absent), remembering it
// for the seal.
func (s *Store) readLast(i int) string {
	if v, ok := s.lastRx[i]; ok {
		return v
	}
	data, err := readSmall(filepath.Join(s.dir, LastReservedPrefix+strconv.Itoa(i)))
	v := strings.TrimSpace(string(data))
	if err != nil {
		v = ""
	}
	if v != "" {
		s.lastRx[i] = v
	}
	return v
}

func ownerKey(o Owner) (string, bool) {
	if o.IfName == "" || o.ContainerID == "" {
		return "", false // legacy files: DEL's fallback, never an ADD's answer
	}
	k := o.ContainerID + hintSep + o.IfName
	return k, len(k) <= 255 && !strings.ContainsAny(k, "/\x00")
}

func (s *Store) entryPath(key string) string {
	return filepath.Join(s.hints, OwnersDir, key)
}

func parseTarget(t string) []netip.Addr {
	var out []netip.Addr
	for _, f := range strings.Split(t, ",") {
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// Indexed returns the addresses the owner index lists for o. Only a trusted
// store's index is complete; entries are hints like the others, so callers
// confirm each address's file before relying on it.
func (s *Store) Indexed(o Owner) []netip.Addr {
	k, ok := ownerKey(o)
	if !ok || s.hints == "" {
		return nil
	}
	t, err := os.Readlink(s.entryPath(k))
	if err != nil {
		return nil
	}
	return parseTarget(t)
}

// setEntry makes o's index entry list addrs (none: no entry).
func (s *Store) setEntry(o Owner, addrs []netip.Addr) {
	k, ok := ownerKey(o)
	if !ok {
		if o.IfName != "" {
			s.indexOK = false // an owner the index cannot hold
		}
		return
	}
	if s.hints == "" {
		return
	}
	s.markDirty()
	p := s.entryPath(k)
	if len(addrs) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.indexOK = false
		}
		return
	}
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = a.String()
	}
	target := strings.Join(parts, ",")
	if len(target) > maxTarget {
		s.indexOK = false
		return
	}
	err := os.Symlink(target, p)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = os.Symlink(target, p)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		// Replace atomically: a new link beside it, renamed over it.
		tmp := filepath.Join(s.hints, OwnersDir, tmpPrefix+k)
		os.Remove(tmp)
		if err = os.Symlink(target, tmp); err == nil {
			if err = os.Rename(tmp, p); err != nil {
				os.Remove(tmp)
			}
		}
	}
	if err != nil {
		slog.Debug("host-local: cannot write an owner index entry", "owner", o.String(), "err", err)
		s.indexOK = false
	}
}

// indexAdd adds a to o's entry.
func (s *Store) indexAdd(o Owner, a netip.Addr) {
	cur := s.Indexed(o)
	if slices.Contains(cur, a) {
		return
	}
	s.setEntry(o, append(cur, a))
}

// indexRemove drops a from o's entry.
func (s *Store) indexRemove(o Owner, a netip.Addr) {
	if _, ok := ownerKey(o); !ok {
		return
	}
	cur := s.Indexed(o)
	if !slices.Contains(cur, a) {
		return
	}
	s.setEntry(o, slices.DeleteFunc(cur, func(x netip.Addr) bool { return x == a }))
}

// Reindex rebuilds the owner index from a full view of the directory: owners
// maps every allocated address to its owner (zero for an empty file), as a
// Scan and the reading of unhinted files establish it. The store is sealed
// on Close unless some entry could not be written.
func (s *Store) Reindex(owners map[netip.Addr]Owner) {
	if s.hints == "" {
		return
	}
	s.markDirty()
	want := map[string][]netip.Addr{}
	byKey := map[string]Owner{}
	complete := true
	for a, o := range owners {
		k, ok := ownerKey(o)
		if !ok {
			if o.IfName != "" {
				complete = false
			}
			continue
		}
		want[k] = append(want[k], a)
		byKey[k] = o
	}
	dir := filepath.Join(s.hints, OwnersDir)
	have, err := readNames(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.indexOK = false
		return
	}
	s.indexOK = complete
	for _, k := range have {
		addrs, ok := want[k]
		if !ok {
			if err := os.Remove(filepath.Join(dir, k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.indexOK = false
			}
			continue
		}
		t, err := os.Readlink(filepath.Join(dir, k))
		if err == nil && sameAddrs(parseTarget(t), addrs) {
			delete(want, k)
		}
	}
	for k, addrs := range want {
		slices.SortFunc(addrs, netip.Addr.Compare)
		s.setEntry(byKey[k], addrs)
	}
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

package nft

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
	"golang.org/x/sys/unix"
)

// DefaultLockFile serialises knit's changes to nftables between plugin
// processes, so that read-then-write steps (create a network's rules once,
// check an element's owner before deleting it) cannot interleave.
const DefaultLockFile = "/run/knit/nft.lock"

// lockTimeout is how long to wait for another knit process before giving up.
const lockTimeout = 30 * time.Second

// procMu orders lock holders inside one process as well; flock alone would
// serialise them too, but the race detector cannot see that.
var procMu sync.Mutex

// lock takes the exclusive lock at path (none when path is empty) and
// returns the function that releases it.
func lock(path string) (unlock func(), err error) {
	procMu.Lock()
	if path == "" {
		return procMu.Unlock, nil
	}
	f, err := openLock(path)
	if err != nil {
		procMu.Unlock()
		return nil, err
	}
	deadline := time.Now().Add(lockTimeout)
	wait := 200 * time.Microsecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			procMu.Unlock()
			return nil, cni.NewError(cni.ErrIOFailure, "cannot lock "+path, err.Error())
		}
		if time.Now().After(deadline) {
			f.Close()
			procMu.Unlock()
			return nil, cni.NewError(cni.ErrTryAgainLater, fmt.Sprintf("another process has held %s for over %s", path, lockTimeout),
				"a knit plugin may be hung: find it with `fuser "+path+"`, then retry")
		}
		time.Sleep(wait)
		if wait < 10*time.Millisecond {
			wait *= 2
		}
	}
	return func() {
		f.Close() // releases the flock
		procMu.Unlock()
	}, nil
}

func openLock(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot create the directory of the nftables lock", err.Error())
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot open the nftables lock", err.Error())
	}
	return f, nil
}

package runtime

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Locks serialise knit processes (and goroutines: flock locks belong to
// the open file, not the process) sharing one cache directory:
//
//   - <cacheDir>/knit-locks/gc: ADD, CHECK and DEL hold it shared, GC
//     exclusive, so no ADD/DEL runs while a GC does (spec §1.4);
//   - <cacheDir>/knit-locks/container-<nn>: exclusive per container, so
//     operations on one container never overlap. Containers hash into 256
//     lock files, so the set stays bounded and no file is created or
//     removed per operation; two containers sharing a file merely take
//     turns.
//
// Runtimes built on the reference library ignore these files.
const lockDirName = "knit-locks"

// containerLockBuckets is the number of per-container lock files.
const containerLockBuckets = 256

// fileLock is a held flock.
type fileLock struct {
	f *os.File
}

// lockFile takes a flock on path (created as needed), waiting until it is
// free or ctx is done. Should a lock file be removed (by hand) while a
// process waits on it, the lock won on the unlinked file is retried.
func lockFile(ctx context.Context, path string, how int) (*fileLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create lock directory (is the cache directory writable?): %w", err)
	}
	wait := time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("cannot open lock file: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			if sameFile(f, path) {
				return &fileLock{f: f}, nil
			}
			f.Close() // won the lock on a file its holder already unlinked
			continue
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return nil, fmt.Errorf("cannot lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(wait):
		}
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func (l *fileLock) release() {
	if l == nil {
		return
	}
	l.f.Close()
}

// opLocks are the locks of one operation, released in reverse order.
type opLocks []*fileLock

func (ls opLocks) release() {
	for i := len(ls) - 1; i >= 0; i-- {
		ls[i].release()
	}
}

// lockContainer takes the GC lock shared and the container's lock
// exclusively.
func (c *CNI) lockContainer(ctx context.Context, containerID string) (opLocks, error) {
	dir := filepath.Join(c.cacheDir, lockDirName)
	g, err := lockFile(ctx, filepath.Join(dir, "gc"), syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	h := fnv.New32a()
	h.Write([]byte(containerID))
	name := fmt.Sprintf("container-%02x", h.Sum32()%containerLockBuckets)
	cl, err := lockFile(ctx, filepath.Join(dir, name), syscall.LOCK_EX)
	if err != nil {
		g.release()
		return nil, err
	}
	return opLocks{g, cl}, nil
}

// lockGC takes the GC lock exclusively.
func (c *CNI) lockGC(ctx context.Context) (opLocks, error) {
	g, err := lockFile(ctx, filepath.Join(c.cacheDir, lockDirName, "gc"), syscall.LOCK_EX)
	if err != nil {
		return nil, err
	}
	return opLocks{g}, nil
}

// Package netns enters, creates and removes Linux network namespaces.
//
// Do runs a function with the calling goroutine's OS thread switched into a
// namespace and back; named namespaces live under /run/netns as bind mounts,
// exactly as `ip netns add` makes them, so iproute2 and other runtimes see
// the same namespaces.
package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultDir is where named namespaces live, as with iproute2.
const DefaultDir = "/run/netns"

// NotExistError says the namespace path does not exist (any more).
type NotExistError struct{ Path string }

func (e *NotExistError) Error() string {
	return fmt.Sprintf("network namespace %q does not exist", e.Path)
}

// Is makes errors.Is(err, fs.ErrNotExist) true for a missing namespace.
func (e *NotExistError) Is(target error) bool { return target == fs.ErrNotExist }

// IsNotExist reports whether err says the namespace does not exist.
func IsNotExist(err error) bool {
	var e *NotExistError
	return errors.As(err, &e)
}

// NotNSError says the path exists but is not a network namespace.
type NotNSError struct{ Path string }

func (e *NotNSError) Error() string {
	return fmt.Sprintf("%q is not a network namespace (expected a file under /run/netns or /proc/PID/ns/net)", e.Path)
}

// Open returns a handle on the namespace at path, checking it is one: a
// missing path gives a NotExistError, a file that is no network namespace a
// NotNSError. The caller closes the handle.
func Open(path string) (vnetns.NsHandle, error) {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return vnetns.None(), &NotExistError{Path: path}
		}
		return vnetns.None(), fmt.Errorf("opening network namespace %q: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(h), &st); err != nil {
		h.Close()
		return vnetns.None(), fmt.Errorf("checking network namespace %q: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		h.Close()
		return vnetns.None(), &NotNSError{Path: path}
	}
	return h, nil
}

// Check returns nil when path is an existing network namespace.
func Check(path string) error {
	h, err := Open(path)
	if err != nil {
		return err
	}
	return h.Close()
}

// Do runs fn inside the network namespace at path, on an OS thread locked
// for the duration, and returns fn's error. If the thread cannot be switched
// back, it stays locked so the Go runtime discards it instead of reusing a
// thread in the wrong namespace.
func Do(path string, fn func() error) error {
	target, err := Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	return DoHandle(target, fn)
}

// DoHandle is Do for a namespace already open (see Open), saving the
// re-open and check of its path.
func DoHandle(target vnetns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("getting the current network namespace: %w", err)
			return // thread stays locked and is discarded
		}
		defer orig.Close()
		if err := vnetns.Set(target); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			runtime.UnlockOSThread()
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("returning to the original network namespace: %w", err))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// SameAsCurrent reports whether path is the namespace the calling goroutine
// runs in. It reads the calling thread's namespace, not the main thread's
// (/proc/self): the main thread may be inside another namespace for a
// moment, on behalf of some other goroutine's Do.
//
// It does not lock the goroutine to its thread: a goroutine locked by the
// caller stays on its thread anyway, and an unlocked one only ever runs on
// threads in the process's own namespace (Do enters another namespace only
// on a locked thread, and a thread that cannot return is discarded). Not
// locking matters at a plugin's start: the first LockOSThread of a process
// starts the runtime's template thread, a clone the plugin may not need.
func SameAsCurrent(path string) (bool, error) {
	target, err := Open(path)
	if err != nil {
		return false, err
	}
	defer target.Close()
	cur, err := vnetns.GetFromPath("/proc/thread-self/ns/net")
	if err != nil {
		return false, err
	}
	defer cur.Close()
	return target.Equal(cur), nil
}

// Path returns the path of the named namespace in dir (DefaultDir if empty).
func Path(dir, name string) string {
	if dir == "" {
		dir = DefaultDir
	}
	return filepath.Join(dir, name)
}

// Create makes a new named network namespace in dir (DefaultDir if empty),
// like `ip netns add NAME`, and returns its path. It fails if one of that name
// exists.
func Create(dir, name string) (string, error) {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return "", fmt.Errorf("invalid namespace name %q: use a plain file name", name)
	}
	if dir == "" {
		dir = DefaultDir
	}
	if err := prepareDir(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("network namespace %q already exists: pick another name or delete it first", name)
		}
		return "", fmt.Errorf("creating %s: %w", path, err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		merr := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(merr, fmt.Errorf("returning to the original network namespace: %w", err))
			return // leave the thread locked: it is in the wrong namespace
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", fmt.Errorf("creating network namespace %q: %w", name, err)
	}
	return path, nil
}

// prepareDir makes dir a shared mount point, as iproute2 does, so mounts of
// namespaces made later propagate to other mount namespaces.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL {
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	return nil
}

// Delete removes the named namespace in dir (DefaultDir if empty), like `ip
// netns del NAME`. A namespace that is already gone is not an error.
func Delete(dir, name string) error {
	return DeletePath(Path(dir, name))
}

// DeletePath unmounts and removes a namespace bind mount. A missing path is
// not an error.
func DeletePath(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmounting network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// List returns the names of the namespaces in dir (DefaultDir if empty),
// sorted. A missing dir is an empty list.
func List(dir string) ([]string, error) {
	if dir == "" {
		dir = DefaultDir
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

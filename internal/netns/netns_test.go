package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenRefusesWhatIsNoNamespace(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	if _, err := Open(missing); !IsNotExist(err) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v; want a NotExistError that is fs.ErrNotExist", err)
	}
	plain := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(plain)
	if _, ok := err.(*NotNSError); !ok {
		t.Errorf("Open(regular file) = %v; want a NotNSError", err)
	}
	if err := Check(plain); err == nil || IsNotExist(err) {
		t.Errorf("Check(regular file) = %v", err)
	}
	h, err := Open("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("Open(own namespace): %v", err)
	}
	h.Close()
	if same, err := SameAsCurrent("/proc/self/ns/net"); err != nil || !same {
		t.Errorf("SameAsCurrent(own namespace) = %v, %v", same, err)
	}
}

// SameAsCurrent takes no thread lock: a goroutine inside Do (locked to its
// thread) must still see the namespace it entered, and goroutines outside
// must never see it, even while another goroutine sits inside.
func TestSameAsCurrentWithoutLock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	dir := t.TempDir()
	p, err := Create(dir, fmt.Sprintf("knit-same-%d", os.Getpid()))
	// Create made dir a (bind) mount point; undo that before TempDir's
	// removal.
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err != nil {
		t.Fatalf("creating a test namespace: %v", err)
	}
	t.Cleanup(func() { _ = DeletePath(p) })

	inside := make(chan struct{})
	leave := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Do(p, func() error {
			close(inside)
			for i := 0; i < 200; i++ {
				runtime.Gosched()
				if same, err := SameAsCurrent(p); err != nil || !same {
					return fmt.Errorf("inside Do, SameAsCurrent(target) = %v, %v", same, err)
				}
			}
			<-leave
			return nil
		})
	}()
	<-inside
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				runtime.Gosched()
				if same, err := SameAsCurrent(p); err != nil || same {
					errs <- fmt.Errorf("outside Do, SameAsCurrent(target) = %v, %v", same, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(leave)
	if err := <-done; err != nil {
		t.Error(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

package netns

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
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

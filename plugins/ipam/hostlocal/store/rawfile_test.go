package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// writeInPlace overwrites without O_TRUNC, so it must cut a longer old
// content to length itself, keep the mode at 0644 whatever the umask, and
// create a missing file.
func TestWriteInPlaceLengths(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	p := filepath.Join(t.TempDir(), "last_reserved_ip.0")
	for _, content := range []string{"10.97.1.156", "10.97.1.9", "10.97.10.250", "", "fd00::1"} {
		if err := writeInPlace(p, content); err != nil {
			t.Fatalf("writeInPlace(%q): %v", content, err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("after writing %q the file holds %q", content, got)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Fatalf("mode %v, want 0644", st.Mode().Perm())
		}
	}
}

package link

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// randomBytes fills b from the kernel's random source with getrandom(2),
// retrying interrupted and short reads. (crypto/rand would do, but its
// first use sets up a DRBG, which a short-lived plugin pays for on every
// run.)
func randomBytes(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Getrandom(b, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading random bytes: %w", err)
		}
		b = b[n:]
	}
	return nil
}

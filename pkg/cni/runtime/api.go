package runtime

import (
	"os"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/invoke"
)

// DefaultCacheDir is where the result cache lives unless Config.CacheDir says otherwise.
const DefaultCacheDir = "/var/lib/cni"

// Config configures a CNI runtime.
type Config struct {
	Paths    []string    // directories searched for plugin binaries (CNI_PATH)
	CacheDir string      // "" = DefaultCacheDir
	Exec     invoke.Exec // nil = invoke.RawExec with stderr forwarded to os.Stderr
}

// CNI runs network configuration lists. It is safe for concurrent use.
type CNI struct {
	paths    []string
	cacheDir string
	exec     invoke.Exec
}

// New returns a runtime for c.
func New(c Config) *CNI {
	n := &CNI{paths: append([]string(nil), c.Paths...), cacheDir: c.CacheDir, exec: c.Exec}
	if n.cacheDir == "" {
		n.cacheDir = DefaultCacheDir
	}
	if n.exec == nil {
		n.exec = &invoke.RawExec{Stderr: os.Stderr}
	}
	return n
}

// CacheDir returns the directory holding the result cache.
func (c *CNI) CacheDir() string { return c.cacheDir }

// RuntimeConf names one attachment and the runtime-supplied arguments.
type RuntimeConf struct {
	ContainerID    string
	NetNS          string
	IfName         string
	Args           [][2]string    // CNI_ARGS pairs
	CapabilityArgs map[string]any // capability name -> runtimeConfig value
}

// GCArgs lists the attachments a GC must keep.
type GCArgs struct {
	ValidAttachments []cni.GCAttachment
}

// Attachment is one cached attachment (a successful ADD not yet DELeted).
type Attachment struct {
	ContainerID    string
	IfName         string
	NetworkName    string
	NetNS          string
	Args           [][2]string
	CapabilityArgs map[string]any
	Config         []byte      // the list's config bytes at ADD time
	Result         *cni.Result // nil if the cache holds none or it is unreadable
	CacheFile      string
}

package runtime

import (
	"context"
	"errors"

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
	return &CNI{paths: c.Paths, cacheDir: c.CacheDir, exec: c.Exec}
}

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

// NotFoundError: the directory holds configurations but none with the name.
type NotFoundError struct{ Dir, Name string }

func (e NotFoundError) Error() string {
	return "no net configuration with name \"" + e.Name + "\" in " + e.Dir
}

// NoConfigsFoundError: the directory holds no network configurations.
type NoConfigsFoundError struct{ Dir string }

func (e NoConfigsFoundError) Error() string { return "no net configurations found in " + e.Dir }

var errTODO = errors.New("runtime: not implemented yet")

// AddNetworkList runs ADD of every plugin of list in order.
func (c *CNI) AddNetworkList(ctx context.Context, list *cni.NetworkConfigList, rt *RuntimeConf) (*cni.Result, error) {
	return nil, errTODO
}

// CheckNetworkList runs CHECK of every plugin of list in order.
func (c *CNI) CheckNetworkList(ctx context.Context, list *cni.NetworkConfigList, rt *RuntimeConf) error {
	return errTODO
}

// DelNetworkList runs DEL of every plugin of list in reverse order.
func (c *CNI) DelNetworkList(ctx context.Context, list *cni.NetworkConfigList, rt *RuntimeConf) error {
	return errTODO
}

// GCNetworkList removes stale attachments of list.
func (c *CNI) GCNetworkList(ctx context.Context, list *cni.NetworkConfigList, args *GCArgs) error {
	return errTODO
}

// GetStatusNetworkList runs STATUS of every plugin of list.
func (c *CNI) GetStatusNetworkList(ctx context.Context, list *cni.NetworkConfigList) error {
	return errTODO
}

// GetVersionInfo asks the plugin of type pluginType which versions it supports.
func (c *CNI) GetVersionInfo(ctx context.Context, pluginType string) (*cni.VersionInfo, error) {
	return nil, errTODO
}

// ValidateNetworkList checks every plugin exists and supports the list's version; returns enabled capabilities.
func (c *CNI) ValidateNetworkList(ctx context.Context, list *cni.NetworkConfigList) ([]string, error) {
	return nil, errTODO
}

// GetNetworkListCachedResult returns the cached result of an attachment.
func (c *CNI) GetNetworkListCachedResult(list *cni.NetworkConfigList, rt *RuntimeConf) (*cni.Result, error) {
	return nil, errTODO
}

// GetNetworkListCachedConfig returns the cached config and runtime args of an attachment.
func (c *CNI) GetNetworkListCachedConfig(list *cni.NetworkConfigList, rt *RuntimeConf) ([]byte, *RuntimeConf, error) {
	return nil, nil, errTODO
}

// GetCachedAttachments lists cached attachments of containerID ("" = all).
func (c *CNI) GetCachedAttachments(containerID string) ([]*Attachment, error) {
	return nil, errTODO
}

// ConfFiles lists files in dir with one of extensions.
func ConfFiles(dir string, extensions []string) ([]string, error) { return nil, errTODO }

// LoadConfList loads the network named name from dir.
func LoadConfList(dir, name string) (*cni.NetworkConfigList, error) { return nil, errTODO }

// LoadAllConfLists loads every network in dir.
func LoadAllConfLists(dir string) ([]*cni.NetworkConfigList, error) { return nil, errTODO }

// BuildPluginConfig derives a plugin's request configuration.
func BuildPluginConfig(plugin *cni.PluginConfig, name, version string, inject map[string]any) ([]byte, error) {
	return nil, errTODO
}

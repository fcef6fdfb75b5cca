package hostdevice

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/knit-cni/knit/pkg/cni"
)

// DefaultDataDir is where ADD records what DEL must restore on the host.
const DefaultDataDir = "/run/knit/host-device"

// Config is the host-device plugin's configuration: the reference's keys
// plus dataDir (where the host-side state of moved devices is kept).
type Config struct {
	cni.NetConf
	Device     string `json:"device"`
	HWAddr     string `json:"hwaddr"`
	KernelPath string `json:"kernelpath"`
	PCIBusID   string `json:"pciBusID"`
	DataDir    string `json:"dataDir,omitempty"`

	RuntimeConfig struct {
		// DeviceID is a PCI address or an auxiliary-bus device id chosen by
		// the runtime (the deviceID capability); it overrides pciBusID.
		DeviceID string `json:"deviceID,omitempty"`
	} `json:"runtimeConfig"`

	hwaddr net.HardwareAddr
	auxID  string
}

// The patterns are compiled on first use, not at start-up: every plugin of
// the multi-call binary would pay for them, and only configs naming a PCI or
// auxiliary device need them.
var (
	pciAddrRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)
	})
	// Auxiliary-bus ids look like "mlx5_core.sf.4": driver.type.index.
	auxIDRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$`)
	})
)

// parseConfig decodes and validates stdin.
func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse host-device network configuration", err.Error())
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if !filepath.IsAbs(c.DataDir) {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "dataDir %q must be an absolute path", c.DataDir)
	}
	if id := c.RuntimeConfig.DeviceID; id != "" {
		switch {
		case pciAddrRE().MatchString(id):
			c.PCIBusID = id
		case auxIDRE().MatchString(id):
			c.auxID = id
		default:
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid runtimeConfig.deviceID %q", id),
				"want a PCI address (0000:03:00.1) or an auxiliary device id (mlx5_core.sf.4)")
		}
	}
	if c.Device == "" && c.HWAddr == "" && c.KernelPath == "" && c.PCIBusID == "" && c.auxID == "" {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, `specify either "device", "hwaddr", "kernelpath" or "pciBusID"`,
			"host-device needs to know which host interface to move into the container")
	}
	if c.Device != "" {
		if err := cni.ValidateInterfaceName(c.Device); err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid device %q", c.Device), err.Error())
		}
	}
	if c.HWAddr != "" {
		mac, err := net.ParseMAC(c.HWAddr)
		if err != nil {
			return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "failed to parse MAC address %q: want colon-separated hex bytes", c.HWAddr)
		}
		c.hwaddr = mac
	}
	if c.KernelPath != "" {
		p := c.KernelPath
		if !filepath.IsAbs(p) || !strings.HasPrefix(p, "/sys/devices/") || filepath.Clean(p) != strings.TrimRight(p, "/") {
			return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "kernel device path %q must be absolute, clean and begin with /sys/devices/", p)
		}
	}
	if c.PCIBusID != "" {
		if !pciAddrRE().MatchString(c.PCIBusID) {
			return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid pciBusID %q: want a PCI address such as 0000:03:00.1", c.PCIBusID)
		}
		if len(c.PCIBusID) == 7 { // bus:dev.fn without the domain
			c.PCIBusID = "0000:" + c.PCIBusID
		}
		c.PCIBusID = strings.ToLower(c.PCIBusID)
	}
	return c, nil
}

// selector describes, for messages, how the config picks the device.
func (c *Config) selector() string {
	switch {
	case c.Device != "":
		return fmt.Sprintf("device %q", c.Device)
	case c.HWAddr != "":
		return fmt.Sprintf("hwaddr %s", c.hwaddr)
	case c.KernelPath != "":
		return fmt.Sprintf("kernelpath %q", c.KernelPath)
	case c.PCIBusID != "":
		return fmt.Sprintf("PCI device %s", c.PCIBusID)
	default:
		return fmt.Sprintf("auxiliary device %s", c.auxID)
	}
}

// hasIPAM reports whether an IPAM plugin is configured.
func (c *Config) hasIPAM() bool { return c.IPAM.Type != "" }

package bridge

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/pkg/cni"
)

// DefaultBridge is the bridge name when the config gives none.
const DefaultBridge = "cni0"

// Config is the bridge plugin's configuration, key for key the reference's.
type Config struct {
	cni.NetConf
	Bridge                    string       `json:"bridge"`
	IsGateway                 bool         `json:"isGateway"`
	IsDefaultGateway          bool         `json:"isDefaultGateway"`
	ForceAddress              bool         `json:"forceAddress"`
	IPMasq                    bool         `json:"ipMasq"`
	IPMasqBackend             *string      `json:"ipMasqBackend,omitempty"`
	MTU                       int          `json:"mtu"`
	HairpinMode               bool         `json:"hairpinMode"`
	PromiscMode               bool         `json:"promiscMode"`
	Vlan                      int          `json:"vlan"`
	VlanTrunk                 []*VlanTrunk `json:"vlanTrunk,omitempty"`
	PreserveDefaultVlan       bool         `json:"preserveDefaultVlan"`
	MacSpoofChk               bool         `json:"macspoofchk"`
	EnableDad                 bool         `json:"enabledad"`
	DisableContainerInterface bool         `json:"disableContainerInterface"`
	PortIsolation             bool         `json:"portIsolation"`

	Args struct {
		Cni struct {
			Mac string `json:"mac,omitempty"`
		} `json:"cni"`
	} `json:"args"`
	RuntimeConfig struct {
		Mac string `json:"mac,omitempty"`
	} `json:"runtimeConfig"`

	// mac is the container MAC chosen from CNI_ARGS, args and runtimeConfig.
	mac net.HardwareAddr
	// trunk is VlanTrunk as ranges.
	trunk []link.VlanRange
}

// VlanTrunk is one vlanTrunk entry: a single id or a minID..maxID range.
type VlanTrunk struct {
	MinID *int `json:"minID,omitempty"`
	MaxID *int `json:"maxID,omitempty"`
	ID    *int `json:"id,omitempty"`
}

// hasVlans reports whether the config asks for bridge VLAN filtering.
func (c *Config) hasVlans() bool { return c.Vlan != 0 || len(c.trunk) > 0 }

// hasIPAM reports whether an IPAM plugin is configured.
func (c *Config) hasIPAM() bool { return c.IPAM.Type != "" }

// parseConfig decodes and validates stdin. cniArgs is CNI_ARGS, which may
// carry MAC=; it applies only to commands that create (ADD).
func parseConfig(stdin []byte, cniArgs string) (*Config, error) {
	c := &Config{Bridge: DefaultBridge}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse bridge network configuration", err.Error())
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if err := cni.ValidateInterfaceName(c.Bridge); err != nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid bridge name %q", c.Bridge), err.Error())
	}
	if c.IsDefaultGateway {
		c.IsGateway = true
	}
	if c.HairpinMode && c.PromiscMode {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "cannot set hairpin mode and promiscuous mode at the same time",
			"set only one of hairpinMode and promiscMode")
	}
	if c.MTU < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid mtu %d: use 0 for the kernel default or a positive value", c.MTU)
	}
	if c.Vlan < 0 || c.Vlan > 4094 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid VLAN ID %d (must be between 0 and 4094)", c.Vlan)
	}
	trunk, err := trunkRanges(c.VlanTrunk)
	if err != nil {
		return nil, err
	}
	c.trunk = trunk
	if c.DisableContainerInterface && c.hasIPAM() {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "cannot use IPAM when disableContainerInterface is set",
			"remove the ipam section or set disableContainerInterface to false")
	}
	if c.IsGateway && c.Vlan != 0 && len(c.Bridge)+1+len(fmt.Sprint(c.Vlan)) > 15 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "bridge name %q is too long for the gateway port %s.%d (15 bytes at most)",
			c.Bridge, c.Bridge, c.Vlan)
	}

	// MAC: CNI_ARGS MAC=, then args.cni.mac, then runtimeConfig.mac; last wins.
	mac, err := link.ContainerMAC("", cniArgs, []string{"MAC", "IP", "GATEWAY"}, c.Args.Cni.Mac, c.RuntimeConfig.Mac)
	if err != nil {
		return nil, err
	}
	c.mac = mac
	return c, nil
}

func trunkRanges(in []*VlanTrunk) ([]link.VlanRange, error) {
	var out []link.VlanRange
	bad := func(msg string) error { return cni.NewError(cni.ErrInvalidNetworkConfig, "invalid vlanTrunk", msg) }
	for _, t := range in {
		if t == nil {
			return nil, bad("an entry is null")
		}
		if t.ID != nil {
			if *t.ID < 1 || *t.ID > 4094 {
				return nil, bad(fmt.Sprintf("id %d is out of range 1..4094", *t.ID))
			}
			out = append(out, link.VlanRange{Min: *t.ID, Max: *t.ID})
		}
		if t.MinID != nil || t.MaxID != nil {
			if t.MinID == nil || t.MaxID == nil {
				return nil, bad("minID and maxID must be given together")
			}
			lo, hi := *t.MinID, *t.MaxID
			if lo < 1 || lo > 4094 || hi < 1 || hi > 4094 {
				return nil, bad(fmt.Sprintf("range %d..%d is out of range 1..4094", lo, hi))
			}
			if lo > hi {
				return nil, bad(fmt.Sprintf("minID %d is greater than maxID %d", lo, hi))
			}
			out = append(out, link.VlanRange{Min: lo, Max: hi})
		}
		if t.ID == nil && t.MinID == nil && t.MaxID == nil {
			return nil, bad("an entry has neither id nor minID/maxID")
		}
	}
	return out, nil
}

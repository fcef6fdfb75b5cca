package link

import (
	"net"

	"github.com/knit-cni/knit/pkg/cni"
)

// ParseMAC parses a MAC address a config, CNI_ARGS or runtimeConfig asks an
// interface to take: six bytes, unicast. An empty string is no MAC (nil).
// Errors carry code 7 and say what a valid value looks like.
func ParseMAC(text string) (net.HardwareAddr, error) {
	if text == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(text)
	if err != nil || len(mac) != 6 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid MAC address %q: want six colon-separated hex bytes", text)
	}
	if mac[0]&1 != 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid MAC address %q: a multicast address cannot be an interface address", text)
	}
	return mac, nil
}

// ContainerMAC picks and checks the MAC a plugin gives the container
// interface: base (the config's own key), overridden by a non-empty MAC= in
// CNI_ARGS, overridden in turn by each non-empty override in order (e.g.
// args.cni.mac, then runtimeConfig.mac). known lists every CNI_ARGS key the
// plugin accepts, for the unknown-key check. No MAC at all gives nil.
func ContainerMAC(base, cniArgs string, known []string, overrides ...string) (net.HardwareAddr, error) {
	text := base
	if cniArgs != "" {
		a, err := cni.LoadArgs(cniArgs, known...)
		if err != nil {
			return nil, err
		}
		if v, ok := a.Get("MAC"); ok && v != "" {
			text = v
		}
	}
	for _, o := range overrides {
		if o != "" {
			text = o
		}
	}
	return ParseMAC(text)
}

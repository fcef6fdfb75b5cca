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

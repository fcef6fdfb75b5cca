package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables/userdata"
	"github.com/knit-cni/knit/pkg/cni"
)

// Owner names the attachment an nftables object belongs to: the CNI network,
// the container ID and the interface name inside the container.
type Owner struct {
	Network     string
	ContainerID string
	IfName      string
}

// String is the owner's tag text, "network/containerID/ifname". None of the
// three parts can contain a slash (cni.Validate* reject it), so the text
// parses back unambiguously.
func (o Owner) String() string {
	return o.Network + "/" + o.ContainerID + "/" + o.IfName
}

// maxComment is the longest comment nftables userdata can carry: the kernel
// allows 256 bytes of userdata, the TLV header takes 2 and the NUL 1.
const maxComment = 253

// Validate checks that every part of the owner is set and well formed, with
// the CNI error code a plugin should report.
func (o Owner) Validate() error {
	if err := cni.ValidateNetworkName(o.Network); err != nil {
		return err
	}
	if err := cni.ValidateContainerID(o.ContainerID); err != nil {
		return err
	}
	if err := cni.ValidateInterfaceName(o.IfName); err != nil {
		return err
	}
	if n := len(o.String()); n > maxComment {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "network name and container ID are too long for an nftables comment",
			fmt.Sprintf("%q is %d bytes, the limit is %d: use a shorter network name", o.String(), n, maxComment))
	}
	return nil
}

// ParseOwner parses the text form made by Owner.String.
func ParseOwner(s string) (Owner, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Owner{}, fmt.Errorf("nftables comment %q is not a knit owner tag (want network/containerID/ifname)", s)
	}
	return Owner{Network: parts[0], ContainerID: parts[1], IfName: parts[2]}, nil
}

// OwnerTag returns the owner as nftables userdata (a comment TLV, as `nft`
// writes it), ready for Rule.UserData; `nft list ruleset` shows it as
// comment "network/containerID/ifname". Set elements carry the same text in
// SetElement.Comment.
func OwnerTag(o Owner) []byte {
	return commentData(o.String())
}

// ParseOwnerTag reads an owner back from rule or element userdata made by
// OwnerTag. ok is false when the userdata holds no knit owner comment.
func ParseOwnerTag(udata []byte) (o Owner, ok bool) {
	s, found := comment(udata)
	if !found {
		return Owner{}, false
	}
	o, err := ParseOwner(s)
	return o, err == nil
}

// networkPrefix starts the comment of objects that belong to a whole network
// rather than to one attachment (chains' rules, sets).
const networkPrefix = "knit network "

// NetworkTag returns rule userdata naming the network an object belongs to:
// comment "knit network NAME".
func NetworkTag(network string) []byte {
	return commentData(networkPrefix + network)
}

// ParseNetworkTag reads the network name from userdata made by NetworkTag.
func ParseNetworkTag(udata []byte) (network string, ok bool) {
	s, found := comment(udata)
	if !found || !strings.HasPrefix(s, networkPrefix) {
		return "", false
	}
	return strings.TrimPrefix(s, networkPrefix), true
}

func commentData(s string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, s)
}

// comment returns the comment TLV in userdata. Unlike userdata.GetString it
// never reads past the end of truncated or foreign userdata.
func comment(udata []byte) (string, bool) {
	for len(udata) >= 2 {
		typ, n := userdata.Type(udata[0]), int(udata[1])
		if len(udata) < 2+n {
			return "", false
		}
		if typ == userdata.TypeComment {
			return strings.TrimSuffix(string(udata[2:2+n]), "\x00"), true
		}
		udata = udata[2+n:]
	}
	return "", false
}

package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elemReader looks up single set elements by key with NFT_MSG_GETSETELEM
// (no dump), which google/nftables does not offer: the cost of finding one
// container's element does not depend on how many the set holds.
type elemReader struct {
	conn     *netlink.Conn
	requests int // lookups sent, for tests that prove no dump happens
}

func dialElemReader(netnsFD int) (*elemReader, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, err
	}
	return &elemReader{conn: c}, nil
}

func (r *elemReader) Close() error { return r.conn.Close() }

// get returns the comment of the element with this key. found is false when
// the table, the set or the element does not exist.
func (r *elemReader) get(s *nftables.Set, key []byte) (comment string, found bool, err error) {
	e, found, err := r.lookup(s, key)
	return e.comment, found, err
}

// foundElem is a set element as the kernel reports it.
type foundElem struct {
	key, keyEnd, data []byte
	comment           string
}

// lookup returns the element matching key (for an interval set, the element
// whose range holds key). found is false when the table, the set or the
// element does not exist.
func (r *elemReader) lookup(s *nftables.Set, key []byte) (e foundElem, found bool, err error) {
	keyAttr, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: key}})
	if err != nil {
		return e, false, err
	}
	elem, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_KEY, Data: keyAttr}})
	if err != nil {
		return e, false, err
	}
	list, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: elem}})
	if err != nil {
		return e, false, err
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(s.Table.Name + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(s.Name + "\x00")},
		{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: list},
	})
	if err != nil {
		return e, false, err
	}
	// nfgenmsg: family, version, resource id (big endian, 0).
	hdr := []byte{byte(s.Table.Family), unix.NFNETLINK_V0, 0, 0}
	// No NLM_F_ACK: the kernel answers with the element or with an error,
	// so exactly one reply comes back and none lingers for the next request.
	msgs, err := r.conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request,
		},
		Data: append(hdr, attrs...),
	})
	r.requests++
	if errors.Is(err, unix.ENOENT) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	for _, m := range msgs {
		if got, ok, err := decodeElem(m.Data); err != nil || ok {
			return got, true, err
		}
	}
	return e, true, nil
}

// decodeElem decodes the first element of a NEWSETELEM reply.
func decodeElem(data []byte) (foundElem, bool, error) {
	var out foundElem
	if len(data) < 4 {
		return out, false, fmt.Errorf("short set element message (%d bytes)", len(data))
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return out, false, err
	}
	ad.ByteOrder = binary.BigEndian
	var found bool
	value := func(nested *netlink.AttributeDecoder) []byte {
		var v []byte
		nested.Nested(func(d *netlink.AttributeDecoder) error {
			for d.Next() {
				if d.Type() == unix.NFTA_DATA_VALUE {
					v = d.Bytes()
				}
			}
			return nil
		})
		return v
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() && !found {
				found = true
				list.Nested(func(elem *netlink.AttributeDecoder) error {
					for elem.Next() {
						switch elem.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							out.key = value(elem)
						case nftables.NFTA_SET_ELEM_KEY_END:
							out.keyEnd = value(elem)
						case unix.NFTA_SET_ELEM_DATA:
							out.data = value(elem)
						case unix.NFTA_SET_ELEM_USERDATA:
							// Element comments use the rule comment TLV type (0).
							out.comment, _ = comment(elem.Bytes())
						}
					}
					return nil
				})
			}
			return nil
		})
	}
	return out, found, ad.Err()
}

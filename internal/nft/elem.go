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
	req, err := elemRequest(s, key)
	if err != nil {
		return e, false, err
	}
	msgs, err := r.conn.Execute(req)
	r.requests++
	return elemReply(msgs, err)
}

// elemQuery is one element to look up by key.
type elemQuery struct {
	set *nftables.Set
	key []byte
}

// elemAnswer is what lookup would return for one elemQuery.
type elemAnswer struct {
	elem  foundElem
	found bool
}

// lookupAll looks up every query (as lookup does) with one send: the
// requests go out in one message train and the kernel answers each with
// exactly one reply, in order, so the answers come back in one round trip
// instead of one per query.
func (r *elemReader) lookupAll(qs []elemQuery) ([]elemAnswer, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	reqs := make([]netlink.Message, 0, len(qs))
	for _, q := range qs {
		req, err := elemRequest(q.set, q.key)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, req)
	}
	if _, err := r.conn.SendMessages(reqs); err != nil {
		return nil, err
	}
	r.requests += len(reqs)
	out := make([]elemAnswer, len(qs))
	var first error
	for i := range qs {
		// Every reply is read, even after a failure, so that none is
		// left behind for the next request on this socket.
		msgs, err := r.conn.Receive()
		e, found, err := elemReply(msgs, err)
		if err != nil && first == nil {
			first = err
		}
		out[i] = elemAnswer{e, found}
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

// elemRequest is the NFT_MSG_GETSETELEM request for key in s.
func elemRequest(s *nftables.Set, key []byte) (netlink.Message, error) {
	keyAttr, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: key}})
	if err != nil {
		return netlink.Message{}, err
	}
	elem, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_KEY, Data: keyAttr}})
	if err != nil {
		return netlink.Message{}, err
	}
	list, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: elem}})
	if err != nil {
		return netlink.Message{}, err
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(s.Table.Name + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(s.Name + "\x00")},
		{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: list},
	})
	if err != nil {
		return netlink.Message{}, err
	}
	// nfgenmsg: family, version, resource id (big endian, 0).
	hdr := []byte{byte(s.Table.Family), unix.NFNETLINK_V0, 0, 0}
	// No NLM_F_ACK: the kernel answers with the element or with an error,
	// so exactly one reply comes back and none lingers for the next request.
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request,
		},
		Data: append(hdr, attrs...),
	}, nil
}

// elemReply reads the reply to one elemRequest: ENOENT (no table, set or
// element) is "not found".
func elemReply(msgs []netlink.Message, err error) (e foundElem, found bool, _ error) {
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

package onelink

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
)

// fakeIPAM installs an IPAM plugin "fakeipam" on CNI_PATH that appends its
// CNI_COMMAND to a file and exits with code (printing a CNI error when
// non-zero). It returns the file.
func fakeIPAM(t *testing.T, code int) string {
	t.Helper()
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$CNI_COMMAND\" >> " + calls + "\n"
	if code != 0 {
		script += `echo '{"code":11,"msg":"ipam busy"}'` + "\nexit 1\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "fakeipam"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CNI_PATH", dir)
	return calls
}

func request(t *testing.T, netnsPath string, conf string) *skel.Request {
	t.Helper()
	req := &skel.Request{Command: "DEL", ContainerID: "c1", Netns: netnsPath, IfName: "eth0", Config: []byte(conf), Version: "1.1.0"}
	if err := json.Unmarshal(req.Config, &req.NetConf); err != nil {
		t.Fatal(err)
	}
	return req
}

func containerWithLink(t *testing.T) string {
	t.Helper()
	ctr := nstest.New(t, "ol")
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "eth0"
	if err := nstest.Handle(t, ctr).LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	return ctr
}

const ipamConf = `{"cniVersion":"1.1.0","name":"n","type":"x","ipam":{"type":"fakeipam"}}`

// Del deletes the link and runs the IPAM plugin's DEL (concurrently); a
// missing namespace or link is fine and repeatable.
func TestDel(t *testing.T) {
	calls := fakeIPAM(t, 0)
	ctr := containerWithLink(t)
	req := request(t, ctr, ipamConf)
	if err := Del(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if nstest.LinkExists(t, ctr, "eth0") {
		t.Fatal("eth0 still exists")
	}
	if err := Del(context.Background(), req); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	req.Netns = "/run/netns/knit-no-such-namespace"
	if err := Del(context.Background(), req); err != nil {
		t.Fatalf("DEL without the namespace: %v", err)
	}
	got, _ := os.ReadFile(calls)
	if strings.Join(strings.Fields(string(got)), ",") != "DEL,DEL,DEL" {
		t.Fatalf("IPAM calls %q; want three DELs", got)
	}
}

// An IPAM failure is reported with its code, and the link is gone anyway.
func TestDelIPAMFailure(t *testing.T) {
	fakeIPAM(t, 1)
	ctr := containerWithLink(t)
	err := Del(context.Background(), request(t, ctr, ipamConf))
	if cni.Code(err) != 11 || !strings.Contains(err.Error(), "ipam busy") {
		t.Fatalf("DEL = %v; want the IPAM plugin's error (code 11)", err)
	}
	if nstest.LinkExists(t, ctr, "eth0") {
		t.Fatal("eth0 kept after the IPAM plugin failed")
	}
}

func TestCheckPolicy(t *testing.T) {
	withIPs := &cni.Result{IPs: []*cni.IPConfig{{}}}
	cases := []struct {
		policy IPAMPolicy
		ipam   string
		prev   *cni.Result
		ok     bool
	}{
		{IPAMOptional, "", nil, true},
		{IPAMRequired, "", nil, false},
		{IPAMRequired, "host-local", nil, true},
		{IPAMOrPrevResult, "", nil, false},
		{IPAMOrPrevResult, "", &cni.Result{}, false},
		{IPAMOrPrevResult, "", withIPs, true},
		{IPAMOrPrevResult, "host-local", nil, true},
	}
	for i, tc := range cases {
		req := &skel.Request{PrevResult: tc.prev}
		req.NetConf.IPAM.Type = tc.ipam
		err := CheckPolicy(req, tc.policy, "kind")
		if (err == nil) != tc.ok || err != nil && cni.Code(err) != cni.ErrInvalidNetworkConfig {
			t.Errorf("case %d: %v; want ok=%v (or code 7)", i, err, tc.ok)
		}
	}
}

func TestCheckMTU(t *testing.T) {
	parent := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}}
	for mtu, ok := range map[int]bool{0: true, 1500: true, 1400: true, 1501: false, -1: false} {
		if err := CheckMTU(mtu, parent); (err == nil) != ok {
			t.Errorf("CheckMTU(%d) = %v; want ok=%v", mtu, err, ok)
		}
	}
}

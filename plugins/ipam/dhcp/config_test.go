package dhcp

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

func TestLoadConfig(t *testing.T) {
	req := &skel.Request{ContainerID: "c", IfName: "net1", Netns: "/run/netns/x", Args: "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=ns",
		Config: []byte(`{"cniVersion":"1.0.0","name":"n","type":"macvlan","ipam":{"type":"dhcp","daemonSocketPath":"/tmp/s.sock","priority":7,
		"provide":[{"option":"host-name","fromArg":"K8S_POD_NAME"},{"option":"60","value":"knit"},{"option":"user-class","fromArg":"MISSING"}],
		"request":[{"option":"interface-mtu"},{"skipDefault":true}]}}`)}
	cfg, err := LoadConfig(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(cfg)
	want := `{"Socket":"/tmp/s.sock","Lease":{"containerID":"c","network":"n","ifName":"net1","netns":"/run/netns/x",` +
		`"provide":[{"code":12,"value":"d2Vi"},{"code":60,"value":"a25pdA=="}],"request":[26],"skipDefault":true,"priority":7}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for name, c := range map[string]struct {
		conf string
		msg  string
	}{
		"no ipam":       {`{"name":"n","type":"x"}`, `missing "ipam"`},
		"no name":       {`{"type":"x","ipam":{"type":"dhcp"}}`, "needs a name"},
		"bad option":    {`{"name":"n","ipam":{"provide":[{"option":"bogus","value":"1"}]}}`, `provide[0]: unknown DHCP option "bogus"`},
		"no value":      {`{"name":"n","ipam":{"provide":[{"option":"host-name"}]}}`, "set value or fromArg"},
		"long value":    {`{"name":"n","ipam":{"provide":[{"option":"host-name","value":"` + strings.Repeat("a", 256) + `"}]}}`, "at most 255"},
		"bad request":   {`{"name":"n","ipam":{"request":[{"option":"300"}]}}`, "request[0]"},
		"not even json": {`{`, "cannot decode"},
	} {
		_, err := LoadConfig(&skel.Request{Config: []byte(c.conf)})
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
}

// Without a daemon every verb fails within a second, code 50, saying to
// start `knit dhcp`.
func TestNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	conf := `{"cniVersion":"1.1.0","name":"n","type":"macvlan","ipam":{"type":"dhcp","daemonSocketPath":"` + sock + `"}}`
	for _, cmd := range []string{"ADD", "DEL", "CHECK", "STATUS"} {
		o := run(cmd, "c", "/run/netns/none", "", conf)
		var e cni.Error
		if o.code == 0 || json.Unmarshal([]byte(o.stdout), &e) != nil {
			t.Fatalf("%s without daemon: %d %s", cmd, o.code, o.stdout)
		}
		if e.Code != cni.ErrPluginNotAvailable || !strings.Contains(e.Msg, "knit dhcp --socket "+sock) || o.took > time.Second {
			t.Errorf("%s without daemon (took %v): %v", cmd, o.took, e)
		}
	}
	// GC without a list has nothing to ask the daemon.
	if o := run("GC", "", "", "", conf); o.code != 0 {
		t.Errorf("GC without attachments: %s", o.stdout)
	}
}

package bridge_test

import (
	"net"
	"testing"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/plugintest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func newLab(t *testing.T) *plugintest.Lab { return plugintest.NewLab(t, "bridge", "bh") }

var (
	withPrev = plugintest.WithPrev
	ping     = plugintest.Ping
	firstIP  = plugintest.FirstIP
	mustCIDR = plugintest.MustCIDR
)

func deleteNetns(path string) error { return netns.DeletePath(path) }

func removeMasq(t *testing.T, l *plugintest.Lab, id string, addr net.IPNet) {
	t.Helper()
	l.RemoveMasq(talkNet, id, addr)
}

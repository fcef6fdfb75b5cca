package hostdevice

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSys builds a sysfs tree: a PCI NIC with a kernel driver, a virtio
// NIC, a DPDK-bound device, a driverless one, an auxiliary device and a
// kernel path, and points sysRoot at it for the test.
func fakeSys(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	pci := "bus/pci/devices/"
	mk("bus/pci/drivers/ixgbe")
	mk("bus/pci/drivers/vfio-pci")
	mk(pci + "0000:03:00.0/net/enp3s0f0")
	link("bus/pci/drivers/ixgbe", pci+"0000:03:00.0/driver")
	mk(pci + "0000:00:04.0/virtio1/net/ens4")
	mk(pci + "0000:05:00.1")
	link("bus/pci/drivers/vfio-pci", pci+"0000:05:00.1/driver")
	mk(pci + "0000:06:00.0")
	mk("bus/auxiliary/devices/mlx5_core.sf.4/net/enp8s0f0s4")
	mk("devices/pci0000:00/0000:00:19.0/net/eno1")
	old := sysRoot
	sysRoot = root
	t.Cleanup(func() { sysRoot = old })
	return root
}

func TestHostDeviceSysfsResolution(t *testing.T) {
	fakeSys(t)
	if n, err := pciNetdevs("0000:03:00.0"); err != nil || !slices.Equal(n, []string{"enp3s0f0"}) {
		t.Errorf("pci netdev: %v %v", n, err)
	}
	if n, err := pciNetdevs("0000:00:04.0"); err != nil || !slices.Equal(n, []string{"ens4"}) {
		t.Errorf("virtio netdev: %v %v", n, err)
	}
	if _, err := pciNetdevs("0000:06:00.0"); err == nil || !strings.Contains(err.Error(), "no network interface") {
		t.Errorf("driverless device: %v", err)
	}
	if _, err := pciNetdevs("0000:09:00.0"); err == nil || !strings.Contains(err.Error(), "no such device") {
		t.Errorf("absent device: %v", err)
	}
	if n, err := auxNetdevs("mlx5_core.sf.4"); err != nil || !slices.Equal(n, []string{"enp8s0f0s4"}) {
		t.Errorf("aux netdev: %v %v", n, err)
	}
	if _, err := auxNetdevs("mlx5_core.sf.9"); err == nil {
		t.Error("absent aux device resolved")
	}
	if n, err := kernelPathNetdevs("/sys/devices/pci0000:00/0000:00:19.0"); err != nil || !slices.Equal(n, []string{"eno1"}) {
		t.Errorf("kernelpath: %v %v", n, err)
	}
}

func TestHostDeviceDPDKDetection(t *testing.T) {
	fakeSys(t)
	for addr, want := range map[string]bool{"0000:03:00.0": false, "0000:05:00.1": true, "0000:06:00.0": false} {
		got, drv, err := isDPDK(addr)
		if err != nil || got != want {
			t.Errorf("isDPDK(%s) = %v (driver %q), %v; want %v", addr, got, drv, err, want)
		}
	}
	if _, _, err := isDPDK("0000:0a:00.0"); err == nil {
		t.Error("absent device reported as not DPDK instead of an error")
	}
}

func TestHostDeviceConfigSelectors(t *testing.T) {
	parse := func(s string) (*Config, error) {
		return parseConfig([]byte(`{"cniVersion":"1.1.0","name":"n","type":"host-device",` + s + `}`))
	}
	c, err := parse(`"pciBusID":"03:00.0"`)
	if err != nil || c.PCIBusID != "0000:03:00.0" || !c.usesPCI() {
		t.Errorf("short PCI address: %+v %v", c, err)
	}
	c, err = parse(`"pciBusID":"0000:03:00.0","runtimeConfig":{"deviceID":"0000:05:00.1"}`)
	if err != nil || c.PCIBusID != "0000:05:00.1" {
		t.Errorf("deviceID must override pciBusID: %+v %v", c, err)
	}
	c, err = parse(`"runtimeConfig":{"deviceID":"mlx5_core.sf.4"}`)
	if err != nil || c.auxID != "mlx5_core.sf.4" || c.usesPCI() {
		t.Errorf("aux deviceID: %+v %v", c, err)
	}
	c, err = parse(`"device":"eth1","pciBusID":"0000:03:00.0"`)
	if err != nil || c.usesPCI() || c.selector() != `device "eth1"` {
		t.Errorf("device takes precedence over pciBusID, as in the reference: %+v %v", c, err)
	}
	if c.DataDir != DefaultDataDir {
		t.Errorf("default dataDir %q", c.DataDir)
	}
	for _, bad := range []string{`"device":"a/b"`, `"dataDir":"rel"`, `"kernelpath":"/sys/devices/a/../../b"`, `"pciBusID":"0000:03:00.9"`} {
		if _, err := parse(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

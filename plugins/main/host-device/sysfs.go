package hostdevice

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// sysRoot is where sysfs is mounted; tests point it at a fake tree.
var sysRoot = "/sys"

// userspaceDrivers are the PCI drivers that hand a NIC to userspace
// (DPDK): such a device has no kernel netdev to move.
var userspaceDrivers = []string{"vfio-pci", "uio_pci_generic", "igb_uio"}

// errNoSuchDevice says sysfs has no device at the given address.
var errNoSuchDevice = errors.New("no such device")

// pciDriver returns the name of the driver bound to the PCI device, or ""
// when none is bound.
func pciDriver(addr string) (string, error) {
	dev := filepath.Join(sysRoot, "bus", "pci", "devices", addr)
	if _, err := os.Stat(dev); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("PCI device %s: %w (nothing at %s)", addr, errNoSuchDevice, dev)
		}
		return "", err
	}
	target, err := filepath.EvalSymlinks(filepath.Join(dev, "driver"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("reading the driver of PCI device %s: %w", addr, err)
	}
	return filepath.Base(target), nil
}

// isDPDK reports whether the PCI device is bound to a userspace driver.
func isDPDK(addr string) (bool, string, error) {
	drv, err := pciDriver(addr)
	if err != nil {
		return false, "", err
	}
	for _, d := range userspaceDrivers {
		if drv == d {
			return true, drv, nil
		}
	}
	return false, drv, nil
}

// netdevNames lists the network interface names under dir (a sysfs
// ".../net" directory), sorted.
func netdevNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// pciNetdevs returns the interface names of a PCI device: its net
// directory, or a virtio child's.
func pciNetdevs(addr string) ([]string, error) {
	dev := filepath.Join(sysRoot, "bus", "pci", "devices", addr)
	if _, err := os.Stat(dev); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("PCI device %s: %w (nothing at %s)", addr, errNoSuchDevice, dev)
		}
		return nil, err
	}
	dir := filepath.Join(dev, "net")
	if _, err := os.Lstat(dir); err != nil {
		matches, _ := filepath.Glob(filepath.Join(dev, "virtio*", "net"))
		if len(matches) == 0 {
			return nil, fmt.Errorf("PCI device %s has no network interface (no net directory; is a network driver bound to it?)", addr)
		}
		sort.Strings(matches)
		dir = matches[0]
	}
	names, err := netdevNames(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("PCI device %s has no network interface (%s is empty)", addr, dir)
	}
	return names, nil
}

// auxNetdevs returns the interface names of an auxiliary-bus device.
func auxNetdevs(id string) ([]string, error) {
	dir := filepath.Join(sysRoot, "bus", "auxiliary", "devices", id, "net")
	names, err := netdevNames(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("auxiliary device %s: %w (nothing at %s)", id, errNoSuchDevice, dir)
		}
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("auxiliary device %s has no network interface (%s is empty)", id, dir)
	}
	return names, nil
}

// kernelPathNetdevs returns the interface names under a /sys/devices path.
func kernelPathNetdevs(path string) ([]string, error) {
	rel := strings.TrimPrefix(path, "/sys/")
	dir := filepath.Join(sysRoot, rel, "net")
	names, err := netdevNames(dir)
	if err != nil {
		return nil, fmt.Errorf("failed to find network devices at %q: %w", dir, err)
	}
	return names, nil
}

package hostlocal

import (
	"bufio"
	"os"
	"strings"

	"github.com/knit-cni/knit/pkg/cni"
)

// ReadResolvConf turns a resolv.conf-format file into a DNS result section:
// nameserver lines become nameservers, domain the domain, search and options
// their lists. Blank lines and comments ('#' or ';') are skipped; other
// keywords are ignored.
func ReadResolvConf(path string) (cni.DNS, error) {
	var dns cni.DNS
	f, err := os.Open(path)
	if err != nil {
		return dns, cni.NewError(cni.ErrIOFailure, "cannot read ipam.resolvConf: check the path", err.Error())
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			dns.Nameservers = append(dns.Nameservers, fields[1])
		case "domain":
			dns.Domain = fields[1]
		case "search":
			dns.Search = append(dns.Search, fields[1:]...)
		case "options":
			dns.Options = append(dns.Options, fields[1:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return dns, cni.NewError(cni.ErrIOFailure, "cannot read ipam.resolvConf", err.Error())
	}
	return dns, nil
}

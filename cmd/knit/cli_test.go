package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestFormatError(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{errors.New("plain"), "plain"},
		{cni.NewError(4, "bad thing", ""), "bad thing (CNI error code 4)"},
		{cni.NewError(7, "bad thing", "the detail"), "bad thing: the detail (CNI error code 7)"},
		{fmt.Errorf("adding c1/eth0: %w", cni.NewError(50, "no plugin", "install it")), "adding c1/eth0: no plugin: install it (CNI error code 50)"},
		{fmt.Errorf("net: %w (hint)", cni.NewError(5, "io", "x")), "net: io: x (hint) (CNI error code 5)"},
	}
	for _, tc := range cases {
		if got := formatError(tc.err); got != tc.want {
			t.Errorf("formatError(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	got, err := parseArgs("IgnoreUnknown=1;K8S_POD_NAME=p")
	if err != nil || len(got) != 2 || got[1] != [2]string{"K8S_POD_NAME", "p"} {
		t.Fatalf("parseArgs: %v %v", got, err)
	}
	if got, err := parseArgs(""); err != nil || got != nil {
		t.Fatalf("parseArgs(\"\"): %v %v", got, err)
	}
	for _, bad := range []string{"A", "A=1;B", "=1", "A=1=2"} {
		_, err := parseArgs(bad)
		if cni.Code(err) != cni.ErrInvalidEnvironmentVariables {
			t.Errorf("parseArgs(%q): want code 4, got %v", bad, err)
		}
	}
}

func TestParseCapArgs(t *testing.T) {
	got, err := parseCapArgs(`{"mac":"aa:bb:cc:dd:ee:ff","portMappings":[{"hostPort":80}]}`)
	if err != nil || got["mac"] != "aa:bb:cc:dd:ee:ff" || got["portMappings"] == nil {
		t.Fatalf("parseCapArgs: %v %v", got, err)
	}
	for _, bad := range []string{"{", "[]", "null", "1", `"x"`} {
		if _, err := parseCapArgs(bad); cni.Code(err) != cni.ErrDecodingFailure {
			t.Errorf("parseCapArgs(%q): want code 6, got %v", bad, err)
		}
	}
}

func TestCheckReplaceable(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "bridge")
	if err := os.Symlink(pluginBinary, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "ptp")
	if err := os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(dir, "vlan")
	if err := os.Symlink("/usr/lib/cni/vlan", elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path  string
		force bool
		ok    bool
	}{
		{filepath.Join(dir, "missing"), false, true},
		{link, false, true},
		{other, false, false},
		{other, true, true},
		{elsewhere, false, false},
		{filepath.Join(dir, "sub"), true, false},
	}
	for _, tc := range cases {
		err := checkReplaceable(tc.path, tc.force)
		if (err == nil) != tc.ok {
			t.Errorf("checkReplaceable(%s, force=%v) = %v, want ok=%v", filepath.Base(tc.path), tc.force, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), tc.path) {
			t.Errorf("error does not name the file: %v", err)
		}
	}
}

package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Required lists patterns (regular expressions over test names, subtests
// included as "TestX/sub") of which each must match at least one test that
// actually ran (passed or failed, not skipped) on every kernel: these are
// the features the harness exists to cover.
var Required = []string{
	`^TestIPVlan`, `^TestVlan`, `^TestDummy`, `^TestVRF`, `^TestMacvlan`, `^TestBridgeVlan`, `^TestHostDevice`,
}

// testResult is one "--- PASS/FAIL/SKIP" line.
type testResult struct {
	Name   string // "TestX" or "TestX/sub"
	Status string // PASS, FAIL or SKIP
	Top    bool   // not a subtest
}

// pkgReport is what one test binary did in the guest.
type pkgReport struct {
	Package string
	Results []testResult
	Exited  bool
	RC      int
}

// guestReport is one boot's serial log, parsed.
type guestReport struct {
	Release  string // uname -r seen by the guest
	Packages []*pkgReport
	Marker   bool // "=== TEST EXIT rc=N" seen
	RC       int
}

var (
	resultRE  = regexp.MustCompile(`^(\s*)--- (PASS|FAIL|SKIP): (\S+) \(`)
	guestRE   = regexp.MustCompile(`^=== KNIT GUEST kernel=(\S+)`)
	pkgRE     = regexp.MustCompile(`^=== PACKAGE (\S+) (START|EXIT rc=(\d+))`)
	markerRE  = regexp.MustCompile(`^=== TEST EXIT rc=(\d+)`)
	consoleCR = strings.NewReplacer("\r", "")
)

// parseSerial reads a guest's serial output. Kernel messages can be
// interleaved with test output, so lines are matched, not assumed in order.
func parseSerial(r io.Reader) (*guestReport, error) {
	g := &guestReport{}
	var cur *pkgReport
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		line := consoleCR.Replace(sc.Text())
		if m := guestRE.FindStringSubmatch(line); m != nil {
			g.Release = m[1]
		} else if m := pkgRE.FindStringSubmatch(line); m != nil {
			if m[2] == "START" {
				cur = &pkgReport{Package: m[1]}
				g.Packages = append(g.Packages, cur)
			} else if cur != nil && cur.Package == m[1] {
				cur.Exited = true
				cur.RC, _ = strconv.Atoi(m[3])
			}
		} else if m := markerRE.FindStringSubmatch(line); m != nil {
			g.Marker = true
			g.RC, _ = strconv.Atoi(m[1])
		} else if m := resultRE.FindStringSubmatch(line); m != nil && cur != nil {
			cur.Results = append(cur.Results, testResult{Name: m[3], Status: m[2], Top: m[1] == ""})
		}
	}
	return g, sc.Err()
}

// verdict is the checked outcome of one kernel.
type verdict struct {
	Passed, Failed, Skipped int      // top-level tests
	Problems                []string // harness-level failures, each counted as one failure
	Executed                map[string][]string
	RequiredBy              map[string][]string // pattern → "pkg TestName" of each test that ran
}

// check applies the harness's rules to a parsed boot: every package ran to
// its end marker with rc 0, no test failed, the final marker is there, and
// every required pattern matched a test that ran.
func check(g *guestReport, wantPkgs []string, required []string) *verdict {
	v := &verdict{Executed: map[string][]string{}, RequiredBy: map[string][]string{}}
	res := make([]*regexp.Regexp, len(required))
	for i, pat := range required {
		res[i] = regexp.MustCompile(pat) // validated by main
	}
	if !g.Marker {
		v.Problems = append(v.Problems, "no '=== TEST EXIT' marker: the guest crashed, hung or timed out (see the serial log)")
	}
	seen := map[string]*pkgReport{}
	for _, p := range g.Packages {
		seen[p.Package] = p
		failedTests := 0
		for _, r := range p.Results {
			if r.Top {
				switch r.Status {
				case "PASS":
					v.Passed++
				case "FAIL":
					v.Failed++
					failedTests++
				case "SKIP":
					v.Skipped++
				}
			}
			if r.Status != "SKIP" {
				if r.Top {
					v.Executed[p.Package] = append(v.Executed[p.Package], r.Name)
				}
				for i, pat := range required {
					if res[i].MatchString(r.Name) {
						v.RequiredBy[pat] = append(v.RequiredBy[pat], p.Package+" "+r.Name)
					}
				}
			}
		}
		switch {
		case !p.Exited:
			v.Problems = append(v.Problems, fmt.Sprintf("%s: did not finish (no exit marker)", p.Package))
		case p.RC != 0 && failedTests == 0:
			v.Problems = append(v.Problems, fmt.Sprintf("%s: exited rc=%d with no failing test (panic, timeout or bad flag; see the serial log)", p.Package, p.RC))
		}
	}
	for _, w := range wantPkgs {
		if seen[w] == nil {
			v.Problems = append(v.Problems, fmt.Sprintf("%s: never started in the guest", w))
		}
	}
	for _, pat := range required {
		if _, ok := v.RequiredBy[pat]; !ok {
			v.Problems = append(v.Problems, fmt.Sprintf("required test %s was skipped or absent", pat))
		}
	}
	return v
}

func (v *verdict) ok() bool { return v.Failed == 0 && len(v.Problems) == 0 }

// print writes the per-package and per-kernel summary.
func (v *verdict) print(w io.Writer, g *guestReport, label string, required []string) {
	for _, p := range g.Packages {
		var pass, fail, skip int
		for _, r := range p.Results {
			if !r.Top {
				continue
			}
			switch r.Status {
			case "PASS":
				pass++
			case "FAIL":
				fail++
			case "SKIP":
				skip++
			}
		}
		status := "ok  "
		if !p.Exited || p.RC != 0 {
			status = "FAIL"
		}
		fmt.Fprintf(w, "%s %s [%s]: %d passed, %d failed, %d skipped\n", status, p.Package, label, pass, fail, skip)
		for _, r := range p.Results {
			if r.Status == "FAIL" {
				fmt.Fprintf(w, "     --- FAIL: %s\n", r.Name)
			}
		}
	}
	pkgs := make([]string, 0, len(v.Executed))
	for p := range v.Executed {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		fmt.Fprintf(w, "executed [%s] %s: %s\n", label, p, strings.Join(v.Executed[p], " "))
	}
	for _, pat := range required {
		if by, ok := v.RequiredBy[pat]; ok {
			// Top-level tests by name; subtests only counted.
			var top []string
			for _, b := range by {
				if _, name, _ := strings.Cut(b, " "); !strings.Contains(name, "/") {
					top = append(top, b)
				}
			}
			fmt.Fprintf(w, "required [%s] %s: ran %d (+%d subtests): %s\n", label, pat, len(top), len(by)-len(top), strings.Join(top, ", "))
		}
	}
	for _, pr := range v.Problems {
		fmt.Fprintf(w, "FAIL [%s] %s\n", label, pr)
	}
}

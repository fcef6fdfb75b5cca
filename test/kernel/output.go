package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// prefixWriter copies complete lines to w, each prefixed.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
	filter func(string) bool // nil: every line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := strings.TrimRight(string(p.buf[:i]), "\r")
		p.buf = p.buf[i+1:]
		if p.filter == nil || p.filter(line) {
			fmt.Fprintf(p.w, "%s%s\n", p.prefix, line)
		}
	}
}

// milestone picks the guest lines shown without -v: package starts and
// ends, failing tests, panics and the final marker.
func milestone(l string) bool {
	return strings.HasPrefix(l, "=== PACKAGE ") || strings.HasPrefix(l, "=== TEST EXIT") ||
		strings.HasPrefix(l, "=== KNIT GUEST") || strings.Contains(l, "--- FAIL:") ||
		strings.HasPrefix(l, "panic:") || strings.Contains(l, "Kernel panic")
}

// tail prints the last n lines of the file at path.
func tail(w io.Writer, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(w, "(cannot read %s: %v)\n", path, err)
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), "\r"))
		if len(lines) > 2*n {
			lines = lines[len(lines)-n:]
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// writeCpio writes the tree under dir as a "newc" (SVR4, no CRC) cpio
// archive, the format the kernel unpacks an initramfs from. Entries are
// root-owned; names are relative ("init", "bin/busybox"), directories come
// before their contents.
func writeCpio(w io.Writer, dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths) // a parent sorts before "parent/child"
	ino := uint32(1)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var data []byte
		mode := uint32(fi.Mode().Perm())
		switch {
		case fi.IsDir():
			mode |= 0o040000
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			mode |= 0o120000
			data = []byte(target)
		case fi.Mode().IsRegular():
			mode |= 0o100000
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("cpio: %s is neither file, directory nor symlink", p)
		}
		nlink := uint32(1)
		if fi.IsDir() {
			nlink = 2
		}
		if err := cpioEntry(w, rel, ino, mode, nlink, data); err != nil {
			return err
		}
		ino++
	}
	return cpioEntry(w, "TRAILER!!!", 0, 0, 1, nil)
}

func cpioEntry(w io.Writer, name string, ino, mode, nlink uint32, data []byte) error {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with NUL), check
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4+len(data)+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	_, err := w.Write(buf)
	return err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

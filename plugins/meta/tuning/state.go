package tuning

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// saved is what ADD found before changing anything, stored as
// <dataDir>/<containerID>_<ifname>.json. The link fields are the reference
// plugin's (so either plugin's DEL restores the other's record); Sysctl and
// Network are knit's additions, which the reference ignores.
type saved struct {
	Mac      string `json:"mac,omitempty"`
	Promisc  *bool  `json:"promisc,omitempty"`
	Mtu      int    `json:"mtu,omitempty"`
	Allmulti *bool  `json:"allmulti,omitempty"`
	TxQLen   *int   `json:"txQLen,omitempty"`
	// Sysctl maps each changed key (slashed, resolved) to its old value.
	Sysctl map[string]string `json:"sysctl,omitempty"`
	// Network names the owner for GC.
	Network string `json:"network,omitempty"`
}

func stateFile(dataDir, containerID, ifname string) string {
	return filepath.Join(dataDir, containerID+"_"+ifname+".json")
}

// readState returns the record, or nil when there is none.
func readState(file string) (*saved, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading saved tuning state: %w", err)
	}
	s := &saved{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("saved tuning state %s is corrupt (%v): remove it by hand once the interface is restored", file, err)
	}
	return s, nil
}

// writeState stores the record atomically (temp file and rename).
func writeState(file string, s *saved) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("creating the tuning data directory: %w", err)
	}
	data, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file))
	if err != nil {
		return fmt.Errorf("saving tuning state: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("saving tuning state: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("saving tuning state: %w", err)
	}
	return nil
}

// parseStateName splits "<containerID>_<ifname>.json". Container IDs may
// contain underscores, interface names may too, so the split is ambiguous
// in general; the candidates are every split point.
func parseStateName(name string) (splits [][2]string) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok || strings.HasPrefix(name, ".") {
		return nil
	}
	for i := 0; i < len(base); i++ {
		if base[i] == '_' && i > 0 && i < len(base)-1 {
			splits = append(splits, [2]string{base[:i], base[i+1:]})
		}
	}
	return splits
}

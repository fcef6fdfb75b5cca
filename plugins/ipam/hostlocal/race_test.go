//go:build race

package hostlocal

const raceEnabled = true

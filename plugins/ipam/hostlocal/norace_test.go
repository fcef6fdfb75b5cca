//go:build !race

package hostlocal

const raceEnabled = false

package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// median of xs (0 for none).
func median(xs []float64) float64 { return quantile(xs, 0.5) }

// p90 is the nearest-rank 90th percentile.
func p90(xs []float64) float64 { return quantile(xs, 0.9) }

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if q == 0.5 {
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// minMedMax formats a spread as "min / median / max".
func minMedMax(xs []float64, prec int) string {
	if len(xs) == 0 {
		return "—"
	}
	f := "%." + fmt.Sprint(prec) + "f"
	return fmt.Sprintf(f+" / "+f+" / "+f, slices.Min(xs), median(xs), slices.Max(xs))
}

// loadavg is the 1-minute load average, for the log and the tables.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

var logStart = time.Now()

// logf prints progress to stderr with the time since start.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(logStart).Seconds(), fmt.Sprintf(format, args...))
}

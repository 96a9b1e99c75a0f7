//go:build race

package ruleset

// raceEnabled: the race detector slows parsing ~10x; timing bounds do not hold.
const raceEnabled = true

//go:build !lifeline_faults

package revert

// faultPoint is a no-op: release builds have no fault points (see
// faultpoint.go, built only with -tags lifeline_faults).
func (e *engine) faultPoint(string) {}

//go:build !linux

package main

// runHidden: off Linux this binary has no re-executed roles (the lab's
// init process needs Linux).
func runHidden() bool { return false }

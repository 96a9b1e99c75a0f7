// Package revert is the host's side of a lifeline transaction: it detects
// the host's firewall backends, snapshots every family in use, validates a
// ruleset by a trial load in a private network namespace, arms a revert
// timer (a transient systemd timer, or a detached watchdog), installs the
// kernel guard, swaps rulesets atomically, and restores the snapshot when no
// confirmation arrives by the deadline.
//
// It runs on the host inside the lifeline-helper binary and never imports
// the workstation's packages. [Request] and [Report] are the wire types
// shared with package session.
package revert

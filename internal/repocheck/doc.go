// Package repocheck holds tests that keep the repository's shape: file
// sizes, and what the workstation binary may depend on. It has no code.
package repocheck

package wire

import "fmt"

// VerbPreflight evaluates a candidate change against the host's real SSH
// path in a private network namespace (the trial load's sandbox) and
// reports, per path and flow, whether the operator would still get in. It
// takes no lock, arms nothing and changes nothing live.
const VerbPreflight = "preflight"

// CodePreflightLockout: begin refused a change that the preflight found
// certain to lock the operator out (Change.ForceLockout overrides; the
// revert still guards the change). Error.Line/Text point at the deciding
// rule of the operator's file when it is known. Not worth retrying: the
// ruleset must change.
const CodePreflightLockout = "preflight-lockout"

// Preflight verdicts (PreflightReport.Verdict, PathVerdict.Verdict).
const (
	PreflightPass      = "pass"      // the path gets through
	PreflightLockout   = "lockout"   // the path is dropped (or rejected): the deciding rule is named
	PreflightUndecided = "undecided" // the evaluation could not decide: Reason says what it could not evaluate
)

// Preflight methods (PathVerdict.Method).
const (
	PreflightKernel = "kernel" // a real TCP flow through the candidate loaded in the sandbox decided
	PreflightModel  = "model"  // the ruleset model (package ruleset) decided
)

// Flows of a path (PathVerdict.Flow).
const (
	FlowNew         = "new"         // a new connection: SYN, handshake
	FlowEstablished = "established" // data on the existing session's flow
)

// SSHPath is one way the operator's SSH reaches the host, as the host sees
// it: from Src (the operator, or the last jump host) to Dst:Port (sshd).
type SSHPath struct {
	Name    string `json:"name"` // "direct" or "via jump NAME"
	Src     string `json:"src"`
	SrcPort int    `json:"src_port,omitempty"` // the existing session's source port (0: any)
	Dst     string `json:"dst"`
	Port    int    `json:"port"`
}

// PreflightArgs is the preflight verb's payload (the change and the paths
// to check), and, in BeginArgs.Preflight, the paths begin checks its own
// change against (Change unused; no paths: BeginArgs.Operator's path).
type PreflightArgs struct {
	Change Change    `json:"change"`
	Paths  []SSHPath `json:"paths,omitempty"`
}

// PreflightReport is the preflight's answer: the worst verdict of all
// paths (lockout > undecided > pass) and each path's verdict per flow.
type PreflightReport struct {
	Verdict string        `json:"verdict"`
	Paths   []PathVerdict `json:"paths"`
	// Took is how long the preflight took on the host (sandbox included).
	Took Duration `json:"took"`
}

// PathVerdict is how the candidate treats one flow of one path.
type PathVerdict struct {
	Path    SSHPath `json:"path"`
	Flow    string  `json:"flow"`
	Verdict string  `json:"verdict"`
	Method  string  `json:"method,omitempty"`
	// Table, Chain, Rule: the deciding rule (Rule empty and Policy true:
	// the chain's policy); Line is its line in the operator's file (0:
	// unknown, or a table the file does not declare).
	Table  string `json:"table,omitempty"`
	Chain  string `json:"chain,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Line   int    `json:"line,omitempty"`
	Policy bool   `json:"policy,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Worst is the verdict of many: lockout before undecided before pass.
func Worst(verdicts ...string) string {
	w := PreflightPass
	for _, v := range verdicts {
		switch {
		case v == PreflightLockout:
			return PreflightLockout
		case v == PreflightUndecided:
			w = PreflightUndecided
		}
	}
	return w
}

// Decider names what decided: "table T chain C rule R (line N)" or
// "table T chain C policy".
func (v PathVerdict) Decider() string {
	switch {
	case v.Chain == "":
		return ""
	case v.Policy && v.Line > 0:
		return fmt.Sprintf("table %s chain %s policy (line %d)", v.Table, v.Chain, v.Line)
	case v.Policy:
		return fmt.Sprintf("table %s chain %s policy", v.Table, v.Chain)
	case v.Line > 0:
		return fmt.Sprintf("table %s chain %s rule %q (line %d)", v.Table, v.Chain, v.Rule, v.Line)
	}
	return fmt.Sprintf("table %s chain %s rule %q", v.Table, v.Chain, v.Rule)
}

// String is one line for a person: the path, the flow, the verdict and
// what decided it.
func (v PathVerdict) String() string {
	s := fmt.Sprintf("%s %s -> %s:%d, %s connection: %s", v.Path.Name, v.Path.Src, v.Path.Dst, v.Path.Port, v.Flow, v.Verdict)
	if d := v.Decider(); d != "" {
		s += " by " + d
	}
	if v.Method != "" {
		s += " [" + v.Method + "]"
	}
	if v.Reason != "" {
		s += ": " + v.Reason
	}
	return s
}

package revert

import "github.com/lifeline-dev/lifeline/wire"

// The protocol types are defined once, in package wire (OS-free, shared
// with the workstation); the host side uses them under these names.

type (
	Format        = wire.Format
	State         = wire.State
	Operator      = wire.Operator
	Request       = wire.Request
	BeginArgs     = wire.BeginArgs
	ExtendArgs    = wire.ExtendArgs
	ChangeKind    = wire.ChangeKind
	Change        = wire.Change
	RulesetChange = wire.RulesetChange
	RestoreChange = wire.RestoreChange
	Report        = wire.Report
	BeginReport   = wire.BeginReport
	DiffReport    = wire.DiffReport
	StatusReport  = wire.StatusReport
	Phase         = wire.Phase
	Detect        = wire.Detect
	Error         = wire.Error
	Holder        = wire.Holder
	Duration      = wire.Duration
	Snapshot      = wire.Snapshot
	Part          = wire.Part
	StateArgs     = wire.StateArgs
	StatePart     = wire.StatePart
	StateReport   = wire.StateReport
	HostFacts     = wire.HostFacts

	ConntrackArgs      = wire.ConntrackArgs
	ConntrackReport    = wire.ConntrackReport
	ConntrackEntries   = wire.ConntrackEntries
	ConntrackState     = wire.ConntrackState
	ConntrackSource    = wire.ConntrackSource
	ConntrackStats     = wire.ConntrackStats
	ConntrackKernelLog = wire.ConntrackKernelLog
	TraceArgs          = wire.TraceArgs
	TraceMatch         = wire.TraceMatch
	TraceEvent         = wire.TraceEvent
	TraceStart         = wire.TraceStart
	TraceLine          = wire.TraceLine
	PreflightArgs      = wire.PreflightArgs
	PreflightReport    = wire.PreflightReport
	PathVerdict        = wire.PathVerdict
	SSHPath            = wire.SSHPath
)

const (
	VerbDetect            = wire.VerbDetect
	VerbDiff              = wire.VerbDiff
	VerbBegin             = wire.VerbBegin
	VerbStage             = wire.VerbStage
	VerbExtend            = wire.VerbExtend
	VerbConfirm           = wire.VerbConfirm
	VerbStatus            = wire.VerbStatus
	VerbAbort             = wire.VerbAbort
	VerbRevert            = wire.VerbRevert
	VerbWatchdog          = wire.VerbWatchdog
	VerbState             = wire.VerbState
	VerbTrace             = wire.VerbTrace
	MaxTraceDuration      = wire.MaxTraceDuration
	FormatNft             = wire.FormatNft
	FormatIPTables        = wire.FormatIPTables
	FormatIP6Tables       = wire.FormatIP6Tables
	StateNone             = wire.StateNone
	StateArmed            = wire.StateArmed
	StateApplied          = wire.StateApplied
	StateConfirmed        = wire.StateConfirmed
	StateReverted         = wire.StateReverted
	StateRevertFailed     = wire.StateRevertFailed
	StateRefused          = wire.StateRefused
	ChangeRuleset         = wire.ChangeRuleset
	ChangeGuarded         = wire.ChangeGuarded
	ChangeRestore         = wire.ChangeRestore
	ChangeBlock           = wire.ChangeBlock
	VerbBlock             = wire.VerbBlock
	MaxProtect            = wire.MaxProtect
	MaxProtectSize        = wire.MaxProtectSize
	MaxOnRevert           = wire.MaxOnRevert
	CodeLockHeld          = wire.CodeLockHeld
	CodeInvalidRuleset    = wire.CodeInvalidRuleset
	CodeSnapshot          = wire.CodeSnapshot
	StateNftJSON          = wire.StateNftJSON
	StateIptablesSave     = wire.StateIptablesSave
	StateIpsetSave        = wire.StateIpsetSave
	CodeBackend           = wire.CodeBackend
	CodeBadToken          = wire.CodeBadToken
	CodeTooLate           = wire.CodeTooLate
	CodeNoTx              = wire.CodeNoTx
	CodeApplyFailed       = wire.CodeApplyFailed
	CodeRevertFailed      = wire.CodeRevertFailed
	CodeInternal          = wire.CodeInternal
	CodeBadRequest        = wire.CodeBadRequest
	CodeBadState          = wire.CodeBadState
	CodeUnguarded         = wire.CodeUnguarded
	CodeStateWrite        = wire.CodeStateWrite
	CodeNeedsRecovery     = wire.CodeNeedsRecovery
	CodeUnsafePath        = wire.CodeUnsafePath
	ExitHelperTampered    = wire.ExitHelperTampered
	ProtocolVersion       = wire.ProtocolVersion
	RestoreLastGood       = wire.RestoreLastGood
	DefaultMaxRulesetSize = wire.DefaultMaxRulesetSize

	VerbPreflight              = wire.VerbPreflight
	CodePreflightLockout       = wire.CodePreflightLockout
	PreflightPass              = wire.PreflightPass
	PreflightLockout           = wire.PreflightLockout
	PreflightUndecided         = wire.PreflightUndecided
	PreflightKernel            = wire.PreflightKernel
	PreflightModel             = wire.PreflightModel
	FlowNew                    = wire.FlowNew
	FlowEstablished            = wire.FlowEstablished
	VerbConntrack              = wire.VerbConntrack
	DefaultConntrackTop        = wire.DefaultConntrackTop
	MaxConntrackTop            = wire.MaxConntrackTop
	DefaultConntrackMaxEntries = wire.DefaultConntrackMaxEntries
)

var CheckRuleset = wire.CheckRuleset

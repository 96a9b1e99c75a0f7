package main

import (
	"fmt"

	"github.com/lifeline-dev/lifeline/internal/history"
	"github.com/lifeline-dev/lifeline/internal/state"
	"github.com/lifeline-dev/lifeline/internal/textsafe"
	"github.com/lifeline-dev/lifeline/session"
	"github.com/lifeline-dev/lifeline/wire"
)

// historyHook records the state after each confirm in the local history
// (session.Options.History). A history that cannot be written is a
// warning, never a failed transaction: the host is confirmed either way.
func historyHook(g *globals) func(t session.Target, txID, origin string, live *wire.StateReport) {
	store, err := historyStore()
	if err != nil {
		fmt.Fprintf(g.stderr, "lifeline: warning: no history will be recorded: %s\n", textsafe.Text(err.Error()))
		return nil
	}
	return func(t session.Target, txID, origin string, live *wire.StateReport) {
		rs, err := state.Parse(t.Name, live.Parts)
		if err == nil {
			_, _, _, err = store.Record(session.HostFile(t.Name), rs, history.Entry{Who: origin, Kind: history.KindConfirmed, TxID: txID})
		}
		if err != nil {
			fmt.Fprintf(g.stderr, "lifeline: warning: %s: the confirmed state was not recorded in the history: %s\n", textsafe.Escape(t.Name), textsafe.Text(err.Error()))
		}
	}
}

/*
 * lifeline's guarded transaction, as a model for the spin model checker.
 * See docs/reliability.md for what each step maps to in the code and tests.
 *
 * One host, one operator. Time is abstract: the deadline may pass at any
 * moment while a transaction is armed or applied. The network loses any
 * request or answer; the helper can die at every step of every verb (what
 * it wrote stays written, like the record on disk); the revert timer or
 * watchdog can be killed at any moment; the host can reboot once. The
 * change may be BAD: it drops every new SSH connection.
 */

mtype = { OLD, GOOD, BAD,                                  /* rulesets */
          NONE, ARMED, APPLIED, CONFIRMED, REVERTED,       /* the record */
          BEGIN, STAGE, EXTEND, CONFIRM, ABORT,            /* requests */
          OK, REFUSED, TOOLATE };                          /* answers */

mtype live = OLD;      /* the live ruleset */
mtype boot = OLD;      /* what the host loads at boot (persisted) */
mtype snap = OLD;      /* begin's snapshot */
mtype state = NONE;    /* the tx record */
mtype change;          /* the operator's change: GOOD or BAD */
bool timer = false;    /* a revert timer (or watchdog) will fire */
bool guard = false;    /* the kernel guard is in the live ruleset */
bool late = false;     /* the recorded deadline has passed */
bool guard_open = false; /* the installed guard's own deadline has passed: it lets the operator in */
bool moving = false;   /* an extend recorded a later deadline and has not moved the guard yet (GuardMoving) */
bool early = false;    /* a guard was open before the recorded deadline: never confirm (GuardOpenEarly) */
bool rebooted = false; /* the host rebooted while armed/applied (boot id differs) */
bool reported_confirmed = false; /* the workstation said "confirmed" */
bool persist;          /* the operator asked for --persist */
bool busy = false;     /* a helper verb is running (a reboot ends it: reboots come between verbs; deaths inside them are the crash points) */

/* a NEW connection gets in: the ruleset lets it, or the kernel guard
 * opens the operator's path once the deadline has passed */
#define reachable (live != BAD || (guard && guard_open))
#define open_tx (state == ARMED || state == APPLIED)

chan req = [1] of { mtype };
chan rep = [1] of { mtype, mtype };   /* verb, answer: each call is its own SSH channel */

/* the next contact after a reboot: the persisted config booted, so an
 * open tx is reverted (revert/tx.go rebootSettle) */
inline settle_reboot() {
  if
  :: rebooted && open_tx -> state = REVERTED; rebooted = false
  :: else -> skip
  fi
}

/* the helper: one verb at a time (the host lock); it may die between any
 * two writes, and each verb is a fresh process */
active proctype helper() {
  mtype v;
  do
  :: req?v ->
     busy = true;
     settle_reboot();
     if
     :: v == BEGIN ->
        if
        :: state == NONE ->
           snap = live;
           if :: skip :: goto died fi;      /* crash: nothing recorded */
           state = ARMED;
           if :: skip :: goto died fi;      /* crash: armed, no timer: settled as reverted (nothing applied) */
           timer = true;
           if :: rep!v,OK :: skip fi          /* the answer may be lost */
        :: else -> if :: rep!v,REFUSED :: skip fi
        fi
     :: v == STAGE ->
        if
        :: state == ARMED && !late && timer ->
           state = APPLIED;                /* recorded applied/applying first */
           if :: skip :: goto died fi;
           atomic { live = change; guard = true; guard_open = late }   /* one nft -f: the guard merged in, already open if the deadline passed */
           if :: rep!v,OK :: skip fi
        :: state == ARMED && !timer ->     /* timer gone before stage: end it, nothing applied */
           state = REVERTED;
           if :: rep!v,REFUSED :: skip fi
        :: else -> if :: rep!v,TOOLATE :: skip fi
        fi
     :: v == EXTEND ->
        if
        :: open_tx && !late ->
           timer = true;                   /* the new generation is armed first */
           if :: skip :: goto died fi;
           if
           :: atomic { late -> skip };     /* re-check: the old deadline passed meanwhile */
              if :: rep!v,TOOLATE :: skip fi
           :: atomic { !late -> moving = guard }   /* recorded: the deadline moves; the old guard still waits */
              if :: skip :: goto died fi;
              if
              :: atomic { moving -> early = early || guard_open; guard_open = false; moving = false }  /* RefreshGuard */
              :: atomic { moving -> late = guard_open; moving = false }  /* it failed: the extend is undone */
              :: !moving -> skip
              fi;
              if :: rep!v,OK :: skip fi
           fi
        :: else -> if :: rep!v,TOOLATE :: skip fi
        fi
     :: v == CONFIRM ->
        if
#if defined(MUTANT_CONFIRM_AFTER_DEADLINE)
        :: state == APPLIED && !early && !moving ->          /* mutant: no deadline check */
#elif defined(MUTANT_CONFIRM_WHILE_GUARD_MOVES)
        :: state == APPLIED && !late ->                      /* mutant: the model's finding undone */
#else
        :: state == APPLIED && !late && !early && !moving ->
#endif
           guard = false; guard_open = false;   /* RemoveGuard: never a re-apply */
           if :: skip :: goto died fi;
           state = CONFIRMED;
           if :: skip :: goto died fi;
           timer = false;                  /* disarm (a timer that still fires finds confirmed) */
           if :: persist -> boot = live :: else -> skip fi;
           if :: rep!v,OK :: skip fi
        :: state == CONFIRMED -> if :: rep!v,OK :: skip fi   /* a retried confirm */
        :: state == APPLIED && (late || early || moving) ->  /* too late, or a guard may have been open: restore now */
           live = snap; guard = false; guard_open = false; moving = false; state = REVERTED; timer = false;
           if :: rep!v,TOOLATE :: skip fi
        :: else -> if :: rep!v,TOOLATE :: skip fi
        fi
     :: v == ABORT ->
        if
        :: open_tx -> live = snap; guard = false; guard_open = false; moving = false; state = REVERTED; timer = false
        :: else -> skip
        fi;
        if :: rep!v,OK :: skip fi
     fi;
     busy = false
  od;
died:
  /* the helper process died mid-verb: the next verb is a new process */
  busy = false;
  goto restart;
restart:
  do
  :: req?v ->
     settle_reboot();
     if
     :: v == CONFIRM && state == CONFIRMED -> if :: rep!v,OK :: skip fi
     :: v == CONFIRM && state == APPLIED && !late && !early && !moving ->
        guard = false; guard_open = false; state = CONFIRMED; timer = false;
        if :: persist -> boot = live :: else -> skip fi;
        if :: rep!v,OK :: skip fi
     :: v == ABORT && open_tx -> live = snap; guard = false; guard_open = false; moving = false; state = REVERTED; timer = false;
        if :: rep!v,OK :: skip fi
     :: else -> if :: rep!v,REFUSED :: skip fi
     fi
  od
}

/* the revert timer fires at the deadline, unless it was killed */
active proctype revert_timer() {
  do
  :: atomic { timer && late && open_tx -> live = snap; guard = false; guard_open = false; moving = false; state = REVERTED; timer = false }
  :: atomic { timer && late && !open_tx -> timer = false }   /* finds the tx ended: does nothing */
  od
}

/* time: the recorded deadline passes (the guard, whose deadline is the
 * same, opens); while an extend moves the guard, the old deadline may pass
 * first. Separate processes, so that weak fairness makes time pass. */
active proctype deadline() {
  do
  :: atomic { open_tx && !late && !moving -> late = true; guard_open = guard }
  od
}
active proctype old_deadline() {
  do
  :: atomic { moving && !guard_open -> guard_open = true }
  od
}

/* the world: a watchdog is killed, the host reboots, messages are lost */
active proctype world() {
  bool rebooted_once = false;
  do
  :: atomic { timer -> timer = false }                       /* kill -9 the watchdog */
  :: atomic { !rebooted_once && open_tx && !busy ->                    /* reboot: the boot config comes up */
       rebooted_once = true; live = boot; guard = false; guard_open = false; moving = false; timer = false; rebooted = true }
  :: atomic { len(req) > 0 -> req?_ }                        /* a request lost */
  :: atomic { len(rep) > 0 -> rep?_,_ }                        /* an answer lost */
  od
}

/* the workstation: begin, stage over C1, confirm over a NEW connection
 * (only when one gets in), retried; otherwise it watches or aborts */
active proctype workstation() {
  mtype a;
  if :: change = GOOD :: change = BAD fi;
  if :: persist = true :: persist = false fi;
  req!BEGIN;
  if
  :: rep?eval(BEGIN),a -> if :: a != OK -> goto done :: else -> skip fi
  :: skip -> goto done                     /* no answer: "unknown", the host reverts by itself */
  fi;
  req!STAGE;
  if
  :: rep?eval(STAGE),a -> if :: a != OK -> goto done :: else -> skip fi
  :: skip -> goto done                     /* no answer from stage: watch the host (Watch), never confirm */
  fi;
  if
  :: atomic { len(req) == 0 && len(rep) == 0 -> req!EXTEND };
     if :: rep?eval(EXTEND),a :: skip fi
  :: skip
  fi;
  do
  :: atomic { reachable && len(req) == 0 && len(rep) == 0 -> req!CONFIRM } ->  /* the fresh connection got in and sent it */
     if
     :: rep?eval(CONFIRM),a ->
        if
        :: a == OK -> reported_confirmed = true; break
        :: else -> break
        fi
     :: skip                               /* no answer: send it again */
     fi
  :: !reachable -> break                   /* locked out: watch the host revert */
  :: len(req) == 0 -> req!ABORT; break     /* a failed check: abort over C1 */
  od;
done:
  skip
}

/* safety: the host is never unreachable with nothing that will restore it */
ltl reachable_or_restorable { [] (reachable || timer || guard) }
/* safety: "confirmed" is reported only when the host recorded the confirm */
ltl confirmed_is_recorded { [] (reported_confirmed -> (state == CONFIRMED)) }
/* safety: a confirmed state is one a fresh connection got into */
ltl never_confirm_a_lockout { [] (state == CONFIRMED -> live != BAD) }
/* liveness: an open transaction ends, or the host is reachable anyway */
ltl open_tx_ends { [] (open_tx -> <> (!open_tx || reachable)) }

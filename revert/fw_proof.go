package revert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Proofs of trial loads (#12): begin trial-loads the snapshot it took, so
// that a revert can never meet a snapshot that does not load. On a host
// that is changed again and again, that snapshot is most often the very
// text an earlier begin already proved (the ruleset confirmed last time).
// A proof is a file, named by a hash of everything that decides whether
// the text loads, whose content repeats that hash:
//
//   - the backend and its load tool (the resolved binary's path, size and
//     modification time: an upgraded tool is a new tool);
//   - the kernel release;
//   - the interface names the scratch namespace mirrors (a rule naming an
//     interface that is gone does not load any more);
//   - the exact load file (the snapshot with the foreign chains carried
//     over as they are live now).
//
// A proof whose content is not its own name (truncated, corrupt, written
// by something else) counts as no proof: the trial load runs and, if it
// succeeds, writes a good proof. The folder is the helper's state folder
// (root, 0700), so a proof is only as trustworthy as the transaction
// records next to it. A failed trial load never writes one.
const maxProofs = 64

// proofKey is the hash a proof of lf loaded by b is named by; ok is false
// when there is no proof folder or the tool cannot be identified.
func (f *hostFirewall) proofKey(ctx context.Context, b backend, lf *loadFile) (string, bool) {
	load, _ := f.trialCmds(b)
	if load == nil {
		return "", false
	}
	return f.trialKey(ctx, "lifeline trial-load proof 1\x00"+b.name(), load, nil, []byte(lf.String()))
}

// trialCmds are the commands a trial load of b's format loads and lists
// with (nil for a backend it does not know).
func (f *hostFirewall) trialCmds(b backend) (load, list []string) {
	switch bb := b.(type) {
	case *nftBackend:
		return bb.loadCmd(), []string{f.tool("nft"), "list", "ruleset"}
	case *iptBackend:
		return bb.loadCmd(false), []string{f.tool(bb.save())}
	}
	return nil, nil
}

// trialKey hashes everything that decides what a trial load of stdin by
// load (then list) does: the tools (resolved path, size, modification
// time), the kernel release, the interface names the trial mirrors, the
// commands and the input.
func (f *hostFirewall) trialKey(ctx context.Context, kind string, load, list []string, stdin []byte) (string, bool) {
	if f.opts.ProofDir == "" || len(load) == 0 {
		return "", false
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", kind)
	for _, argv := range [][]string{load, list} {
		if len(argv) == 0 {
			continue
		}
		path, err := f.opts.LookPath(argv[0])
		if err != nil {
			return "", false
		}
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		st, err := os.Stat(path)
		if err != nil {
			return "", false
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%q\x00", path, st.Size(), st.ModTime().UnixNano(), argv[1:])
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", false
	}
	ifaces, err := f.interfaces(ctx)
	if err != nil {
		return "", false
	}
	ifaces = slices.Clone(ifaces)
	slices.Sort(ifaces)
	fmt.Fprintf(h, "%s\x00%s\x00", unix.ByteSliceToString(uts.Release[:]), strings.Join(ifaces, ","))
	h.Write(stdin)
	return hex.EncodeToString(h.Sum(nil)), true
}

// A listing memo is what a trial namespace listed after a load, kept so
// that the same load and list (the same input, tools, kernel and
// interfaces: the same key) is not run twice — begin's validation lists
// what the operator's ruleset leaves, and stage's verify compares the live
// ruleset with that instead of loading it into a third namespace. The
// first line is the key and how long the trial took (begin weighs a
// ruleset's load time against the confirm timeout); a memo without them
// is no memo. At most maxMemos
// are kept (a listing of a large ruleset is megabytes).
const maxMemos = 4

func (f *hostFirewall) memo(key string) (out string, took time.Duration, ok bool) {
	data, err := readTrusted(filepath.Join(f.opts.ProofDir, "list-"+key))
	if err != nil {
		return "", 0, false
	}
	head, rest, ok := strings.Cut(string(data), "\n")
	name, ns, _ := strings.Cut(head, " ")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || name != key || err != nil || n < 0 {
		return "", 0, false
	}
	return rest, time.Duration(n), true
}

func (f *hostFirewall) keepMemo(key, out string, took time.Duration) {
	dir := f.opts.ProofDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	if err := writeFileAtomic(filepath.Join(dir, "list-"+key), []byte(fmt.Sprintf("%s %d\n%s", key, took.Nanoseconds(), out)), 0o600); err != nil {
		f.opts.Log("keep a trial listing: %v", err)
		return
	}
	f.prune("list-", maxMemos, "list-"+key)
}

// proven reports whether a good proof named key exists.
func (f *hostFirewall) proven(key string) bool {
	// a proof that another user could have written is no proof
	data, err := readTrusted(filepath.Join(f.opts.ProofDir, key))
	return err == nil && strings.TrimSpace(string(data)) == key
}

// prove records that the load named key succeeded. Failing to is only a
// missed saving next time, never an error; the folder keeps the newest
// maxProofs proofs.
func (f *hostFirewall) prove(key string) {
	dir := f.opts.ProofDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	if err := writeFileAtomic(filepath.Join(dir, key), []byte(key+"\n"), 0o600); err != nil {
		f.opts.Log("keep a trial-load proof: %v", err)
		return
	}
	f.prune("", maxProofs, key)
}

// prune keeps the newest keep files of the proof folder whose names start
// with prefix (""): proofs, the ones without "list-"), never keeping.
func (f *hostFirewall) prune(prefix string, keep int, keeping string) {
	dir := f.opts.ProofDir
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type aged struct {
		name string
		mod  int64
	}
	var all []aged
	for _, e := range ents {
		name := e.Name()
		if prefix == "" && strings.HasPrefix(name, "list-") || !strings.HasPrefix(name, prefix) {
			continue
		}
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			all = append(all, aged{name, info.ModTime().UnixNano()})
		}
	}
	if len(all) <= keep {
		return
	}
	slices.SortFunc(all, func(a, b aged) int { return int(min(max(a.mod-b.mod, -1), 1)) })
	for _, a := range all[:len(all)-keep] {
		if a.name != keeping {
			_ = os.Remove(filepath.Join(dir, a.name))
		}
	}
}

// trialLoadProven trial-loads lf with b unless a proof says it loads, and
// records a proof when it does.
func (f *hostFirewall) trialLoadProven(ctx context.Context, b backend, lf *loadFile) error {
	key, ok := f.proofKey(ctx, b, lf)
	if ok && f.proven(key) {
		return nil
	}
	if err := b.trialLoad(ctx, lf); err != nil {
		return err
	}
	if ok {
		f.prove(key)
	}
	return nil
}

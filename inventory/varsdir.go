package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
)

// readVarDirs adds Ansible's group_vars/ and host_vars/ next to the
// inventory: for a group or host NAME, the file NAME, NAME.yml, NAME.yaml or
// NAME.json, or every file below the folder NAME/ (in name order). As in
// Ansible, group_vars/ override the group variables written in the
// inventory file itself, of every group, and host_vars/ the host's.
// Vault-encrypted files are skipped: lifeline cannot decrypt them.
func (b *builder) readVarDirs() error {
	b.group("all", 0)
	for _, name := range b.gorder {
		g := b.groups[name]
		if err := b.readVars("group_vars", name, g.fileSet); err != nil {
			return err
		}
	}
	for _, h := range b.hosts {
		if err := b.readVars("host_vars", h.name, h.fileSet); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) readVars(dir, name string, set settings) error {
	files, err := b.varFiles(dir, name)
	if err != nil {
		return err
	}
	for _, rel := range files {
		data, err := fs.ReadFile(b.varsFS, rel)
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Join(b.dir, rel), err)
		}
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("$ANSIBLE_VAULT")) {
			continue
		}
		fb := newBuilder(filepath.Join(b.dir, filepath.FromSlash(rel)), b.format)
		fb.file = rel
		top, err := parseYAML(fb.path, data)
		if err != nil {
			return err
		}
		ps, err := fb.mapping(top, "a vars file")
		if err != nil {
			return err
		}
		for _, p := range ps {
			s, err := fb.varString(p.v)
			if err != nil {
				return err
			}
			set["vars."+p.key] = value{v: s, src: "in " + fb.at(p.k.Line), pos: fb.loc(p.k.Line)}
		}
	}
	return nil
}

// varFiles lists the vars files for one group or host, in load order.
func (b *builder) varFiles(dir, name string) ([]string, error) {
	base := path.Join(dir, name)
	if !fs.ValidPath(base) || path.Dir(base) != dir {
		return nil, nil // a name with "/" or ".." cannot have a vars file
	}
	fi, err := fs.Stat(b.varsFS, base)
	if err == nil && fi.IsDir() {
		var files []string
		err := fs.WalkDir(b.varsFS, base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && varFileExt(p) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(b.dir, base), err)
		}
		sort.Strings(files)
		return files, nil
	}
	var files []string
	for _, ext := range []string{"", ".yml", ".yaml", ".json"} {
		fi, err := fs.Stat(b.varsFS, base+ext)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", filepath.Join(b.dir, base+ext), err)
		case fi.Mode().IsRegular():
			files = append(files, base+ext)
		}
	}
	return files, nil
}

func varFileExt(p string) bool {
	switch path.Ext(p) {
	case "", ".yml", ".yaml", ".json":
		return path.Base(p)[0] != '.'
	}
	return false
}

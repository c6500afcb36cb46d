package matomotest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RepoRoot is the directory holding go.mod, found from the working directory.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// SharedDir is ../shared beside the repository (facts and fixtures captured
// from a real Matomo), or "" when absent (a user's clone).
func SharedDir() string {
	root := RepoRoot()
	if root == "" {
		return ""
	}
	d := filepath.Join(filepath.Dir(root), "shared")
	if _, err := os.Stat(filepath.Join(d, "fixtures")); err != nil {
		return ""
	}
	return d
}

// Fixtures is testdata/fixtures: console output, table dumps and schema
// captured from a real Matomo 5.0.2, copied from ../shared/fixtures by
// scripts/sync-fixtures.sh so that a plain clone tests the same as CI.
func Fixtures(t testing.TB) string {
	t.Helper()
	d := filepath.Join(RepoRoot(), "testdata", "fixtures")
	if _, err := os.Stat(filepath.Join(d, "schema.sql")); err != nil {
		t.Fatalf("testdata/fixtures is incomplete (%v): run scripts/sync-fixtures.sh", err)
	}
	return d
}

// GlobalINI is the config/global.ini.php of the Matomo 5.0.2 release: every
// fake Matomo directory gets it, so that every test reads config.ini.php
// over it as matomod must on a real install.
func GlobalINI() string { return filepath.Join(RepoRoot(), "testdata", "matomo", "global.ini.php") }

var sim struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// Simulator builds the simulated Matomo console (internal/matomosim) once
// per test process and returns its path. Tests use it as php_binary: it is
// called as `<sim> <matomo>/console core:archive …` like PHP would be.
func Simulator(t testing.TB) string {
	t.Helper()
	sim.once.Do(func() {
		dir, err := os.MkdirTemp("", "matomosim")
		if err != nil {
			sim.err = err
			return
		}
		sim.path = filepath.Join(dir, "php")
		cmd := exec.Command("go", "build", "-o", sim.path, "./internal/matomosim")
		cmd.Dir = RepoRoot()
		sim.out, sim.err = cmd.CombinedOutput()
	})
	if sim.err != nil {
		t.Fatalf("building the console simulator: %v\n%s", sim.err, sim.out)
	}
	return sim.path
}

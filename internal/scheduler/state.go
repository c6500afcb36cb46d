package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DefaultStateFile is where the daemon keeps its State unless configured otherwise
// (systemd StateDirectory=matomod).
const DefaultStateFile = "/var/lib/matomod/state.json"

// State is what survives a restart. To remember more (say the last gap scan), add a field with
// an omitzero tag: older files simply lack it, and unknown fields in a newer file are ignored.
// While a Scheduler runs it is the only writer of its state file; change it through
// Scheduler.UpdateState, not SaveState, so a run finishing at the same time does not undo it.
type State struct {
	// LastRun is when the last run started, whatever its outcome.
	LastRun time.Time `json:"last_run,omitzero"`
	// LastSuccess is when the last successful run finished. Catch-up at start is decided from it.
	LastSuccess time.Time `json:"last_success,omitzero"`
}

// LoadState reads the state file. A missing file is a first start: the zero State and no error.
// Any other problem returns the zero State and an error meant to be logged as a warning, not
// to stop the daemon: the file is rewritten after the next run.
func LoadState(path string) (State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading state file: %w: starting without it; check its permissions", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("state file %s is corrupt: %w: starting without it; it is rewritten after the next run", path, err)
	}
	return st, nil
}

// SaveState writes the state file atomically: a temporary file in the same directory is written
// and fsynced, renamed over path, and the directory is fsynced so the rename survives a crash.
// Readers see the old file or the new one, never a torn one.
func SaveState(path string, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state for %s: %w", path, err)
	}
	data = append(data, '\n')

	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, "."+filepath.Base(path)+".tmp*", data)
	if err != nil {
		return fmt.Errorf("saving state: %w: check that the directory exists and is writable by matomod", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("saving state: %w", err)
	}
	// The file is in place; a failed directory fsync only weakens durability across a crash.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing state directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing state directory %s: %w", dir, err)
	}
	return nil
}

// writeTemp writes data to a new file in dir, fsyncs and closes it, and returns its name.
// On error nothing is left behind.
func writeTemp(dir, pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

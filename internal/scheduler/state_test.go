package scheduler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveStateIsAtomicAndRoundTrips(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, want := range []State{
		{LastSuccess: time.Date(2025, 3, 30, 1, 59, 59, 123, time.UTC)},
		{LastRun: time.Date(2025, 3, 31, 3, 0, 0, 0, time.FixedZone("CEST", 7200)), LastSuccess: time.Date(2025, 3, 31, 1, 5, 0, 0, time.UTC)},
	} {
		if err := SaveState(path, want); err != nil {
			t.Fatal(err)
		}
		got, err := LoadState(path)
		if err != nil || !got.LastRun.Equal(want.LastRun) || !got.LastSuccess.Equal(want.LastSuccess) {
			t.Errorf("LoadState = %+v, %v; want %+v", got, err, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "state.json" {
		t.Errorf("directory holds %v, want only state.json (no temp files left)", entries)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("state file mode = %v, %v; want 0600", info.Mode(), err)
	}
}

func TestStateFileFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := SaveState(path, State{LastSuccess: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Zero times are left out; the file is readable by an operator.
	if want := "{\n  \"last_success\": \"2025-01-02T03:04:05Z\"\n}\n"; string(data) != want {
		t.Errorf("state file:\n%s\nwant:\n%s", data, want)
	}
	// Fields a newer version added are ignored.
	if err := os.WriteFile(path, []byte(`{"last_success":"2025-01-02T03:04:05Z","last_gap_scan":"2025-01-02T04:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := LoadState(path); err != nil || st.LastSuccess.IsZero() {
		t.Errorf("LoadState with an unknown field = %+v, %v", st, err)
	}
}

func TestLoadStateMissingFileIsFirstStart(t *testing.T) {
	st, err := LoadState(filepath.Join(t.TempDir(), "state.json"))
	if err != nil || st != (State{}) {
		t.Errorf("LoadState(missing) = %+v, %v; want zero State, nil", st, err)
	}
}

func TestLoadStateBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": "", "torn": `{"last_success": "20`, "wrong type": `{"last_success": 5}`} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := LoadState(path)
		if err == nil || st != (State{}) {
			t.Errorf("%s: LoadState = %+v, %v; want zero State and an error", name, st, err)
			continue
		}
		if want := "state file " + path + " is corrupt: "; !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "it is rewritten after the next run") {
			t.Errorf("%s: error %q", name, err)
		}
	}
	// A directory where the file should be: unreadable, reported, not fatal.
	if _, err := LoadState(dir); err == nil || !strings.HasPrefix(err.Error(), "reading state file: read "+dir+": is a directory") {
		t.Errorf("LoadState(dir) error = %v", err)
	}
}

func TestSaveStateIntoMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "state.json")
	err := SaveState(path, State{LastSuccess: time.Now()})
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(path)) || !strings.HasSuffix(err.Error(), "check that the directory exists and is writable by matomod") {
		t.Errorf("SaveState into a missing directory = %v", err)
	}
}

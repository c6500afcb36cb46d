package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
)

var binOnce struct {
	sync.Once
	path string
	err  error
	out  []byte
}

// buildMatomod builds the real binary once per test process.
func buildMatomod(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "matomod-bin")
		if err != nil {
			binOnce.err = err
			return
		}
		binOnce.path = filepath.Join(dir, "matomod")
		cmd := exec.Command("go", "build", "-o", binOnce.path, ".")
		binOnce.out, binOnce.err = cmd.CombinedOutput()
	})
	if binOnce.err != nil {
		t.Fatalf("go build: %v\n%s", binOnce.err, binOnce.out)
	}
	return binOnce.path
}

// instance is one matomod process.
type instance struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	log  strings.Builder
}

func (in *instance) logs() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.log.String()
}

func (in *instance) metric(name string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + in.addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

func startInstance(t *testing.T, bin, cfg string) *instance {
	in := &instance{addr: freePort(t)}
	in.cmd = exec.Command(bin, "run", "--config.file="+cfg, "--web.listen-address="+in.addr, "--log.format=logfmt")
	pr, pw := io.Pipe()
	in.cmd.Stderr = pw
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			in.mu.Lock()
			in.log.WriteString(sc.Text() + "\n")
			in.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		in.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { in.cmd.Wait(); pw.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			in.cmd.Process.Kill()
		}
	})
	return in
}

// Three instances on one database: exactly one leads; after kill -9 of the
// leader another leads within 15 s and runs the next archive; no two
// core:archive runs ever overlap across instances; followers never touch
// the console, so never invalidate.
func TestHighAvailability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three daemons")
	}
	bin := buildMatomod(t)
	e := matomotest.New(t)
	e.AddSite(1, "UTC", day(30).Format("2006-01-02"))
	e.SetOption("version_core", matomotest.MatomoVersion)
	for d := 10; d >= 1; d-- {
		e.AddVisits(1, day(d).Add(10*time.Hour), 2)
		if d != 4 {
			e.AddDayArchive(1, day(d).Format("2006-01-02"), 1, day(d-1).Add(time.Hour), 2)
		}
	}
	// The simulator creates this on its first run; create it first so the
	// test can poll it before then.
	e.Exec("CREATE TABLE IF NOT EXISTS matomosim_runs (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, " +
		"host VARCHAR(255) NOT NULL, pid INT NOT NULL, started DATETIME(6) NOT NULL, ended DATETIME(6) NULL) ENGINE=InnoDB")
	var ins []*instance
	for i := 0; i < 3; i++ {
		cfg := writeConfig(t, e, knobs("MATOMOSIM_RUNLOG=1", "MATOMOSIM_SLEEP_PER_ARCHIVE=100ms"))
		cfg = rewrite(t, cfg, "@every 1s", "@every 2s")
		ins = append(ins, startInstance(t, bin, cfg))
	}
	leaders := func(set []*instance) (n int, who *instance) {
		for _, in := range set {
			if in.metric("matomod_leader") == "1" {
				n++
				who = in
			}
		}
		return
	}
	var leader *instance
	waitFor(t, "exactly one leader", 20*time.Second, func() bool {
		n, w := leaders(ins)
		leader = w
		return n == 1
	})
	waitFor(t, "the leader's first archive run", 20*time.Second, func() bool {
		return e.Count("SELECT COUNT(*) FROM matomosim_runs WHERE ended IS NOT NULL") >= 1
	})
	// Stable: still one leader a few ticks later.
	time.Sleep(2 * time.Second)
	if n, w := leaders(ins); n != 1 || w != leader {
		t.Fatalf("leadership moved or split: %d leaders", n)
	}
	killedAt := time.Now().UTC()
	leader.cmd.Process.Signal(syscall.SIGKILL)
	var rest []*instance
	for _, in := range ins {
		if in != leader {
			rest = append(rest, in)
		}
	}
	start := time.Now()
	var next *instance
	waitFor(t, "a new leader within 15 s", 15*time.Second, func() bool {
		n, w := leaders(rest)
		next = w
		return n == 1
	})
	t.Logf("new leader after %v", time.Since(start).Round(100*time.Millisecond))
	waitFor(t, "an archive run by the new leader", 20*time.Second, func() bool {
		return e.Count("SELECT COUNT(*) FROM matomosim_runs WHERE started > ? AND ended IS NOT NULL", killedAt.Add(time.Second)) >= 1
	})
	// No overlap: a run cut short by the kill has no end; PHP died with its
	// matomod (Pdeathsig), so it ended at the kill.
	rows, err := e.DB.Query("SELECT id, started, COALESCE(ended, ?) FROM matomosim_runs ORDER BY started", killedAt.Add(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	type run struct {
		id         int
		start, end time.Time
	}
	var runs []run
	for rows.Next() {
		var r run
		rows.Scan(&r.id, &r.start, &r.end)
		runs = append(runs, r)
	}
	rows.Close()
	for i := 1; i < len(runs); i++ {
		if runs[i].start.Before(runs[i-1].end) {
			t.Errorf("runs %d and %d overlap: %v–%v and %v–%v", runs[i-1].id, runs[i].id, runs[i-1].start, runs[i-1].end, runs[i].start, runs[i].end)
		}
	}
	if len(runs) < 2 {
		t.Errorf("only %d runs recorded", len(runs))
	}
	// Followers never started the console (no archive, no invalidation).
	for _, in := range ins {
		if in == leader || in == next {
			continue
		}
		if l := in.logs(); strings.Contains(l, "event=console_started") || strings.Contains(l, "event=repair_started") {
			t.Errorf("a follower ran the console:\n%s", l)
		}
	}
	if !strings.Contains(leader.logs(), "event=repair_started") {
		t.Errorf("the first leader did not repair the missing day:\n%s", leader.logs())
	}
	if t.Failed() {
		for i, in := range ins {
			fmt.Fprintf(os.Stderr, "--- instance %d\n%s", i, in.logs())
		}
	}
}

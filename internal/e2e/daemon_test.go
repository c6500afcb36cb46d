package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/realmatomo"
)

// daemon is one `matomod run` process.
type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	logs []string
	done chan struct{}
}

func startDaemon(t *testing.T, cfg string) *daemon {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := &daemon{t: t, addr: addr, done: make(chan struct{})}
	d.cmd = exec.Command(matomod(t), "--config.file="+cfg, "--log.format=logfmt", "--log.level=debug", "--web.listen-address="+addr, "run")
	d.cmd.Env = append(d.cmd.Environ(), "NOTIFY_SOCKET=", "WATCHDOG_USEC=")
	stderr, _ := d.cmd.StderrPipe()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.logs = append(d.logs, sc.Text())
			d.mu.Unlock()
		}
		d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			for _, l := range d.lines("") {
				if !strings.Contains(l, "console_output") {
					t.Log(l)
				}
			}
		}
	})
	return d
}

// lines returns the log lines containing s.
func (d *daemon) lines(s string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, l := range d.logs {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (d *daemon) metrics() string {
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric is the sum of the samples of name whose labels contain every
// given label pair.
func metric(text, name string, labels ...string) float64 {
	var sum float64
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, l := range strings.Split(text, "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		ok := true
		for _, lb := range labels {
			if !strings.Contains(m[1], lb) {
				ok = false
			}
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

func doneFlag(t *testing.T, in *realmatomo.Instance, idsite int, date string) (int, bool) {
	num, _ := archiveTables(date)
	var v int
	err := in.DB.QueryRow(strings.ReplaceAll(fmt.Sprintf("SELECT value FROM %s WHERE idsite = ? AND date1 = ? AND period = 1 AND name = 'done' ORDER BY ts_archived DESC, idarchive DESC LIMIT 1", num), "{p}", in.Prefix), idsite, date).Scan(&v)
	return v, err == nil
}

// `matomod run` against the real console: a scheduled run archives today's
// new visits and its archive count is parsed; a day archive deleted while
// the daemon runs is seen and repaired within a scan interval; SIGTERM
// leaves no PHP process behind.
func TestRealDaemonSchedulesScansRepairs(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	ctx := context.Background()
	// Visits today give the scheduled run something to archive: the day,
	// its week, month and year of site 1.
	now := time.Now().UTC()
	if err := in.Server().Track(ctx, in.Manifest.Token, []realmatomo.Visit{{IDSite: 1, At: now.Add(-2 * time.Minute)}, {IDSite: 1, At: now.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	cfg := config(t, in, `archive:
  schedule: "@every 20s"
  run_timeout: 5m
  kill_grace: 5s
gaps:
  scan_interval: 5s
stop_timeout: 2m
`)
	d := startDaemon(t, cfg)
	waitFor(t, "a scheduled run to finish", 3*time.Minute, func() bool { return len(d.lines("event=run_finished")) > 0 })
	fin := d.lines("event=run_finished")[0]
	m := regexp.MustCompile(` archives=(\d+)`).FindStringSubmatch(fin)
	if m == nil || m[1] == "0" {
		t.Errorf("run_finished without its archive count: %s", fin)
	}
	waitFor(t, "the run in /metrics", 30*time.Second, func() bool {
		return metric(d.metrics(), "matomod_archive_runs_total", `result="success"`) >= 1
	})
	if got := visitsOf(t, in, 1, "day", now.Format(time.DateOnly)); got != 2 {
		t.Errorf("today after the scheduled run: VisitsSummary %d, want 2", got)
	}

	// A day archive deleted while the daemon runs (a restore from backup,
	// say) is seen and repaired.
	target := day(4)
	deleteArchives(t, in, 3, target, target, 1)
	planted := time.Now()
	waitFor(t, "the deleted day to be seen", 2*time.Minute, func() bool {
		return len(d.lines("event=gap_found")) > 0
	})
	seen := time.Now()
	waitFor(t, "the deleted day to be repaired", 3*time.Minute, func() bool {
		v, ok := doneFlag(t, in, 3, target)
		return ok && v == 1
	})
	t.Logf("deleted day seen after %s, repaired %s later", seen.Sub(planted).Round(time.Second), time.Since(seen).Round(time.Second))
	if got, want := visitsOf(t, in, 3, "day", target), in.Manifest.Visits["3 "+target]; got != want {
		t.Errorf("site 3 %s after the repair: VisitsSummary %d, want %d", target, got, want)
	}
	if gf := d.lines("event=gap_found"); !strings.Contains(gf[0], "idsite=3") || !strings.Contains(gf[0], "date="+target) {
		t.Errorf("gap_found names another day: %s", gf[0])
	}

	// SIGTERM: matomod exits 0 and no PHP console process is left.
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("matomod did not stop within 3 minutes of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if ps := phpProcesses(in.Dir); len(ps) > 0 {
		t.Errorf("PHP left running after SIGTERM: %q", ps)
	}
}

// A core:archive stopped at run_timeout reports the archives it printed,
// and the in-progress queue rows Matomo leaves behind (it resets them only
// after a day: Model::resetFailedArchivingJobs) show up in the metrics.
func TestRealRunTimeoutCountsAndReportsInProgressRows(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	ctx := context.Background()
	// Three requests at once keep rows in progress nearly all the time; a
	// run killed between two batches leaves none, so try up to three times.
	cfg := config(t, in, "archive:\n  run_timeout: 6s\n  kill_grace: 2s\n  extra_args: [\"--concurrent-requests-per-website=3\"]\n")
	var inProgress, total int
	for try := 1; try <= 3 && inProgress == 0; try++ {
		if out, err := in.Console(ctx, "core:invalidate-report-data", "--sites=1,2", "--dates="+day(12)+","+day(2), "--periods=day"); err != nil {
			t.Fatal(err, out)
		}
		code, out, errOut := cli(t, cfg, "archive")
		if code != 1 || !strings.Contains(out, "core:archive timeout") {
			t.Fatalf("archive: exit %d\n%s\n%s", code, out, errOut)
		}
		printed := strings.Count(errOut, "Archived website id")
		if !strings.Contains(out, fmt.Sprintf(", %d archives processed", printed)) {
			t.Errorf("archive count is not the %d Archived lines printed: %s", printed, out)
		}
		total += printed
		in.DB.QueryRow(strings.ReplaceAll("SELECT COUNT(*) FROM {p}archive_invalidations WHERE status = 1", "{p}", in.Prefix)).Scan(&inProgress)
		t.Logf("try %d: %d Archived lines, %d rows left in progress", try, printed, inProgress)
	}
	if total == 0 {
		t.Fatal("the killed runs archived nothing before their timeout: nothing to count")
	}
	if inProgress == 0 {
		t.Fatal("no in-progress invalidation rows after three killed runs: Matomo's behaviour changed?")
	}
	if ps := phpProcesses(in.Dir); len(ps) > 0 {
		t.Errorf("PHP left running after the timeout: %q", ps)
	}

	// The daemon reports them.
	cfg = config(t, in, "archive:\n  schedule: \"0 0 1 1 *\"\ngaps:\n  scan_interval: 5s\n")
	d := startDaemon(t, cfg)
	waitFor(t, "in-progress rows in /metrics", time.Minute, func() bool {
		return metric(d.metrics(), "matomo_archive_invalidations", `status="in_progress"`) == float64(inProgress)
	})
}

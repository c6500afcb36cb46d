package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
)

// daemonFigure starts the real binary (`matomod run`) against the main
// database, waits for its first gap scan, lets it settle and reads its
// resident memory; it also times /metrics over HTTP. Any failure is
// reported as "not measured" with the reason, never as a figure.
func (b *bench) daemonFigure(ctx context.Context, ds *dataset, dir string) {
	r := b.rep
	if b.cfg.daemon == "off" {
		r.add(row{figure: "daemon idle RSS", kind: "-", median: "not measured (--daemon off)", target: "≤ 30 MiB"})
		return
	}
	rss, scrape, mem, err := b.daemonRSS(ctx, ds, dir)
	if err != nil {
		b.progress("daemon idle RSS not measured: %v", err)
		r.add(row{figure: "daemon idle RSS", kind: "-", median: "not measured", target: "≤ 30 MiB"})
		r.notes = append(r.notes, "daemon idle RSS not measured: "+err.Error())
		return
	}
	r.add(row{figure: "daemon idle RSS (VmRSS)", kind: fmt.Sprintf("idle %v after its first full scan", b.cfg.rssWait), median: mib(rss), target: "≤ 30 MiB",
		verdict: verdictMax(float64(rss), targetRSS)})
	r.notes = append(r.notes, "daemon (`matomod run` on "+ds.env.Name+", its default 365-day window, idle after its first scan): "+mem)
	r.add(row{figure: "/metrics over HTTP from the daemon", kind: "cached snapshot, no DB query", median: dur(scrape), spread: "(20)",
		trips: "0", heap: "-", target: "≤ 10 ms", verdict: verdictMax(float64(scrape), float64(targetScrape))})
}

// lockedBuffer collects a child's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(l.b.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func (b *bench) daemonRSS(ctx context.Context, ds *dataset, dir string) (rss uint64, scrape time.Duration, mem string, err error) {
	bin := b.cfg.daemon
	if bin == "" {
		root := matomotest.RepoRoot()
		if root == "" {
			return 0, 0, "", errors.New("not run from the repository: pass --daemon PATH to the matomod binary")
		}
		bin = filepath.Join(dir, "matomod")
		b.progress("building %s for the idle-RSS figure", bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/matomod")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, 0, "", fmt.Errorf("go build ./cmd/matomod: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	php, err := exec.LookPath("true")
	if err != nil {
		return 0, 0, "", errors.New("no `true` binary to stand in for php")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, "", err
	}
	addr := l.Addr().String()
	l.Close()
	// No archive run due for a year and no repairs: the daemon only scans,
	// which is its idle state between runs.
	yml := fmt.Sprintf(`matomo_dir: %q
php_binary: %q
archive:
  url: "http://matomo.example.org/"
  schedule: "0 3 1 1 *"
gaps:
  auto_repair: false
  verify_days: 0
state_file: %q
`, ds.env.Dir, php, filepath.Join(dir, "state.json"))
	ymlPath := filepath.Join(dir, "matomod.yml")
	if err := os.WriteFile(ymlPath, []byte(yml), 0o600); err != nil {
		return 0, 0, "", err
	}
	var out lockedBuffer
	cmd := exec.Command(bin, "--config.file="+ymlPath, "--web.listen-address="+addr, "--log.format=logfmt", "--log.level=warn", "run")
	cmd.Stdout, cmd.Stderr = &out, &out
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NOTIFY_SOCKET=") && !strings.HasPrefix(e, "WATCHDOG_") && !strings.HasPrefix(e, "LISTEN_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, "", fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	b.progress("daemon pid %d on %s: waiting for its first gap scan", cmd.Process.Pid, addr)
	url := "http://" + addr + "/metrics"
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if body, err := get(client, url); err == nil && scanned(body) {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			return 0, 0, "", fmt.Errorf("the daemon exited (%v): %s", err, out.tail(3))
		case <-ctx.Done():
			return 0, 0, "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, 0, "", fmt.Errorf("no finished gap scan after 5 minutes: %s", out.tail(3))
		}
	}
	// Let the scan's garbage be collected and the scavenger return pages.
	var first uint64
	wait := int(b.cfg.rssWait / time.Second)
	for i := 0; i < max(wait, 1); i++ {
		select {
		case <-ctx.Done():
			return 0, 0, "", ctx.Err()
		case <-time.After(time.Second):
		}
		if rss, err = vmRSS(cmd.Process.Pid); err != nil {
			return 0, 0, "", err
		}
		if i == 0 {
			first = rss
		}
	}
	body, err := get(client, url)
	if err != nil {
		return 0, 0, "", err
	}
	gauge := func(name string) uint64 {
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return uint64(f)
			}
		}
		return 0
	}
	mem = fmt.Sprintf("VmRSS %s after 1 s, %s after %d s; Go heap: %s allocated, %s in use, %s idle of which %s released to the OS; %s obtained from the OS in all",
		mib(first), mib(rss), max(wait, 1), mib(gauge("go_memstats_alloc_bytes")), mib(gauge("go_memstats_heap_inuse_bytes")),
		mib(gauge("go_memstats_heap_idle_bytes")), mib(gauge("go_memstats_heap_released_bytes")), mib(gauge("go_memstats_sys_bytes")))
	var ds2 []time.Duration
	for i := 0; i < 25; i++ {
		t := time.Now()
		if _, err := get(client, url); err != nil {
			return 0, 0, "", err
		}
		if i >= 5 {
			ds2 = append(ds2, time.Since(t))
		}
	}
	slices.Sort(ds2)
	return rss, ds2[len(ds2)/2], mem, nil
}

func get(client *http.Client, url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

// scanned reports whether the exposition shows a finished gap scan.
func scanned(body string) bool {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "matomod_gap_scan_last_success_timestamp_seconds "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && f > 0
		}
	}
	return false
}

// vmRSS reads a process's resident set size from /proc.
func vmRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the daemon's RSS: %w (Linux /proc needed)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS line in /proc/<pid>/status")
}

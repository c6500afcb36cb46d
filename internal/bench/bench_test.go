package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
)

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sites", "0"}, "--sites 0: must be between 1 and 100000"},
		{[]string{"--days", "2"}, "--days 2: must be between 4 and 3660"},
		{[]string{"--visits", "-5"}, "--visits -5: must be between 1 and 2000000000"},
		{[]string{"--runs", "0"}, "--runs 0: must be between 1 and 1000"},
		{[]string{"--archive-rows", "1"}, "--archive-rows 1: must be between 2 and 33"},
		{[]string{"--heap-sites", "-3"}, "--heap-sites -3: must be between 0 and 100000"},
		{[]string{"--buffer-pool", "lots"}, `--buffer-pool "lots": not a size: use e.g. 512M or 4G`},
		{[]string{"--db", "bench-1"}, `--db "bench-1": use letters, digits and _ only (at most 50)`},
		{[]string{"big"}, `unexpected argument "big": every setting is a flag (see -h)`},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || err.Error() != tc.want {
			t.Errorf("parseFlags(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--sites", "0"}, io.Discard, &stderr); code != exitError || stderr.String() != "bench: --sites 0: must be between 1 and 100000\n" {
		t.Errorf("run with a bad flag: exit %d, stderr %q", code, stderr.String())
	}
}

func TestFlagDefaults(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.sites != 200 || c.days != 120 || c.visits != 500_000 || c.window != 120 || c.heapSites != 1000 || c.bufferPool != 0 {
		t.Errorf("defaults: %+v", c)
	}
	c, err = parseFlags([]string{"--sites", "1000", "--days", "400", "--visits", "20000000", "--buffer-pool", "8G"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.heapSites != 10_000 || c.window != 365 || c.bufferPool != 8<<30 {
		t.Errorf("make bench-large: heap-sites %d, window %d, buffer pool %d", c.heapSites, c.window, c.bufferPool)
	}
}

func TestPoissonMean(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, l := range []float64{0.3, 4, 29, 31, 5000} {
		var sum float64
		const n = 20000
		for i := 0; i < n; i++ {
			sum += float64(poisson(rng, l))
		}
		if m := sum / n; math.Abs(m-l) > 0.05*l+0.05 {
			t.Errorf("poisson(%g): mean %g", l, m)
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{dur(420 * time.Microsecond), "420 µs"},
		{dur(3456 * time.Microsecond), "3.46 ms"},
		{dur(386 * time.Millisecond), "386 ms"},
		{dur(12060 * time.Millisecond), "12.06 s"},
		{thousands(9882452), "9,882,452"},
		{thousands(-1234), "-1,234"},
		{verdictMax(2, 1), "MISSED (×2.0 the target)"},
		{verdictMax(1, 1), "ok"},
		{verdictMin(50, 100), "MISSED (50 % of the target)"},
		{mib(64 << 20), "64.0 MiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestRunSmall runs the whole benchmark on a tiny data set against the
// real MariaDB: seeding, both scans, the comparisons, rescans, the
// archive-only database and /metrics (the daemon step is left out: it
// builds the binary). Figures are not asserted, only that everything ran
// and that matomod and the naive query agree.
func TestRunSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := serverInfo(ctx, matomotest.AdminDSN()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no MariaDB at MATOMOD_TEST_DSN: %v", err)
		}
		t.Skipf("no MariaDB at MATOMOD_TEST_DSN: %v", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := "matomod_bench_t_" + hex.EncodeToString(b[:])
	var out, errb bytes.Buffer
	code := run([]string{"--sites", "8", "--days", "12", "--visits", "3000", "--runs", "1", "--naive-runs", "1",
		"--heap-sites", "40", "--heap-days", "20", "--archive-rows", "5", "--daemon", "off", "--db", db}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{
		"figure", "gap scan, ", "naive query, per-site time zone", "steady-state rescan", "rescan after 1 % invalidated", "rescan after an archive run",
		"growth N/2 → N, matomod", "/metrics scrape, 40 sites", "same gaps: yes",
		"table-scan floor, ", "full scan / floor", "buffer-pool page requests", "growth N/2 → N per round",
		"naive per-site-time-zone counts equal the seeded counts on every site-day of the window: yes",
		db + "_10k: matomod found the", "daemon idle RSS", "not measured (--daemon off)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// Both databases were dropped.
	admin, err := adminDB(matomotest.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE ?", db+"%").Scan(&n); err != nil || n != 0 {
		t.Errorf("databases %s* left behind: %d (%v)", db, n, err)
	}
}

// TestNaiveSession checks that the naive query's connections carry the
// setting that keeps its GROUP BY in memory.
func TestNaiveSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := serverInfo(ctx, matomotest.AdminDSN()); err != nil {
		t.Skipf("no MariaDB at MATOMOD_TEST_DSN: %v", err)
	}
	nv, err := openNaive(matomotest.AdminDSN(), "", "matomo_", time.Now(), 30)
	if err != nil {
		t.Fatal(err)
	}
	defer nv.db.Close()
	var tmp, heap string
	if err := nv.db.QueryRowContext(ctx, "SELECT @@SESSION.tmp_table_size, @@SESSION.max_heap_table_size").Scan(&tmp, &heap); err != nil {
		t.Fatal(err)
	}
	if tmp != naiveTmpTable || heap != naiveTmpTable {
		t.Errorf("naive session: tmp_table_size %s, max_heap_table_size %s, want %s", tmp, heap, naiveTmpTable)
	}
}

func TestLoads(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want string
	}{
		{[]float64{2.31}, "2.3"},
		{[]float64{2.31, 1.94, 2.62}, "1.9–2.6"},
		{[]float64{-1, 2.04, 2.01}, "2.0"},
		{[]float64{-1}, "?"},
		{nil, "?"},
	} {
		if got := loads(tc.in); got != tc.want {
			t.Errorf("loads(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

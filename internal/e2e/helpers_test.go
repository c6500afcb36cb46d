package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
	"github.com/matomod/matomod/internal/realmatomo"
)

var bin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// matomod builds the binary once per test process.
func matomod(t *testing.T) string {
	t.Helper()
	bin.once.Do(func() {
		dir, err := os.MkdirTemp("", "matomod-e2e")
		if err != nil {
			bin.err = err
			return
		}
		bin.path = filepath.Join(dir, "matomod")
		cmd := exec.Command("go", "build", "-o", bin.path, "./cmd/matomod")
		cmd.Dir = matomotest.RepoRoot()
		bin.out, bin.err = cmd.CombinedOutput()
	})
	if bin.err != nil {
		t.Fatalf("building matomod: %v\n%s", bin.err, bin.out)
	}
	return bin.path
}

// config writes a matomod.yml that names only the Matomo directory, PHP and
// a state file: the database settings come from Matomo's own INI files.
func config(t *testing.T, in *realmatomo.Instance, extra string) string {
	t.Helper()
	dir := t.TempDir()
	y := fmt.Sprintf("matomo_dir: %s\nphp_binary: php\nstate_file: %s\n%s", in.Dir, filepath.Join(dir, "state.json"), extra)
	p := filepath.Join(dir, "matomod.yml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cli runs one matomod command to its end.
func cli(t *testing.T, cfg string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, matomod(t), append([]string{"--config.file=" + cfg, "--log.format=logfmt"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("matomod %v: %v\n%s", args, err, e.String())
	}
	return code, o.String(), e.String()
}

// gap is one row of `matomod gaps --format json`.
type gap struct {
	IDSite     int    `json:"idsite"`
	Period     string `json:"period"`
	Date       string `json:"date"`
	Kind       string `json:"kind"`
	RawVisits  int64  `json:"raw_visits"`
	Archived   *int64 `json:"archived_visits"`
	Repairable bool   `json:"repairable"`
	Reason     string `json:"reason"`
}

func (g gap) String() string {
	r := "repairable"
	if !g.Repairable {
		r = "unrepairable"
	}
	if g.Period != "" && g.Period != "day" {
		return fmt.Sprintf("%d %s %s %s %s", g.IDSite, g.Period, g.Date, g.Kind, r)
	}
	return fmt.Sprintf("%d %s %s %s", g.IDSite, g.Date, g.Kind, r)
}

// dayGaps keeps the day gaps (weeks, months and years have their own tests).
func dayGaps(gs []gap) []gap {
	var out []gap
	for _, g := range gs {
		if g.Period == "" || g.Period == "day" {
			out = append(out, g)
		}
	}
	return out
}

type gapsOut struct {
	SitesScanned int   `json:"sites_scanned"`
	Gaps         []gap `json:"gaps"`
	Collection   []struct {
		IDSite int    `json:"idsite"`
		Date   string `json:"date"`
	} `json:"collection_gaps"`
}

func gaps(t *testing.T, cfg string, args ...string) gapsOut {
	t.Helper()
	code, out, errOut := cli(t, cfg, append([]string{"gaps", "--format=json"}, args...)...)
	var res gapsOut
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("gaps: exit %d: %v\n%s\n%s", code, err, out, errOut)
	}
	if want := map[bool]int{true: 1, false: 0}[len(res.Gaps) > 0]; code != want {
		t.Errorf("gaps exit %d with %d gaps, want %d\n%s", code, len(res.Gaps), want, errOut)
	}
	return res
}

func gapStrings(gs []gap) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.String())
	}
	sort.Strings(out)
	return out
}

// day is the UTC calendar day n days before today, as Matomo names it.
func day(n int) string { return time.Now().UTC().AddDate(0, 0, -n).Format(time.DateOnly) }

// monthTables lists the archive tables of one site-day's month.
func archiveTables(date string) (numeric, blob string) {
	ym := strings.ReplaceAll(date[:7], "-", "_")
	return "{p}archive_numeric_" + ym, "{p}archive_blob_" + ym
}

// deleteArchives removes every archive (all periods, all segments) of a site
// whose start date lies in [from, to] and whose period is in periods.
func deleteArchives(t *testing.T, in *realmatomo.Instance, idsite int, from, to string, periods ...int) {
	t.Helper()
	num, blob := archiveTables(from)
	ps := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(periods)), ","), "[]")
	q := fmt.Sprintf("SELECT DISTINCT idarchive FROM %s WHERE idsite = %d AND date1 BETWEEN '%s' AND '%s' AND period IN (%s)", num, idsite, from, to, ps)
	rows, err := in.DB.Query(strings.ReplaceAll(q, "{p}", in.Prefix))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		ids = append(ids, fmt.Sprint(id))
	}
	rows.Close()
	if len(ids) == 0 {
		t.Fatalf("site %d %s..%s: no archives to delete", idsite, from, to)
	}
	list := strings.Join(ids, ",")
	in.Exec(fmt.Sprintf("DELETE FROM %s WHERE idarchive IN (%s)", num, list))
	in.Exec(fmt.Sprintf("DELETE FROM %s WHERE idarchive IN (%s)", blob, list))
}

// setDayDone changes the plain done flag of a site-day archive in place and
// backdates it, as if written hours ago.
func setDayDone(t *testing.T, in *realmatomo.Instance, idsite int, date string, done int, tsArchived time.Time) {
	t.Helper()
	num, _ := archiveTables(date)
	in.Exec(fmt.Sprintf("UPDATE %s SET value = ?, ts_archived = ? WHERE idsite = ? AND date1 = ? AND period = 1 AND name = 'done'", num),
		done, tsArchived.UTC().Format(time.DateTime), idsite, date)
}

// visitsByDay is Matomo's own nb_visits per day of a site over the planted
// window (VisitsSummary.get, period=day, date=FIRST,LAST).
func visitsByDay(t *testing.T, in *realmatomo.Instance, idsite int) map[string]int {
	t.Helper()
	var out map[string]json.RawMessage
	p := map[string][]string{"idSite": {fmt.Sprint(idsite)}, "period": {"day"}, "date": {in.Manifest.FirstDay + "," + day(1)}}
	if err := in.Server().API(context.Background(), in.Manifest.Token, "VisitsSummary.get", p, &out); err != nil {
		t.Fatal(err)
	}
	res := map[string]int{}
	for d, raw := range out {
		var m struct {
			NbVisits int `json:"nb_visits"`
		}
		if json.Unmarshal(raw, &m) == nil {
			res[d] = m.NbVisits
		}
	}
	return res
}

func visitsOf(t *testing.T, in *realmatomo.Instance, idsite int, period, date string) int {
	t.Helper()
	n, err := in.DayVisits(context.Background(), idsite, period, date, "")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// phpProcesses lists running PHP processes whose command line names dir.
func phpProcesses(dir string) []string {
	out, _ := exec.Command("ps", "-eo", "pid,args").Output()
	var res []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, dir) && strings.Contains(l, "console") && !strings.Contains(l, "php -S") {
			res = append(res, strings.TrimSpace(l))
		}
	}
	return res
}

package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/matomod/matomod/internal/matomotest"
	"github.com/matomod/matomod/internal/realmatomo"
)

// consoleRunner runs one console command on an instance, with real PHP or
// with the simulator standing in for it.
type consoleRunner func(args ...string) (out string, code int)

func phpRunner(t *testing.T, in *realmatomo.Instance, php string) consoleRunner {
	return func(args ...string) (string, int) {
		cmd := exec.Command(php, append([]string{filepath.Join(in.Dir, "console")}, args...)...)
		cmd.Dir = in.Dir
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
}

// tableState is what a console command leaves in the tables that matomod
// reads: the queue, and every archive's plain done flag and nb_visits.
func tableState(t *testing.T, in *realmatomo.Instance) (queue, archives []string) {
	t.Helper()
	q := func(sql string, f func(cols []string)) {
		rows, err := in.DB.Query(strings.ReplaceAll(sql, "{p}", in.Prefix))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			rows.Scan(ptrs...)
			var s []string
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					s = append(s, string(b))
				} else {
					s = append(s, fmt.Sprint(v))
				}
			}
			f(s)
		}
	}
	q("SELECT idsite, period, date1, date2, name, status FROM {p}archive_invalidations", func(c []string) { queue = append(queue, strings.Join(c, " ")) })
	var tables []string
	q("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '%archive_numeric_%'", func(c []string) { tables = append(tables, c[0]) })
	for _, tb := range tables {
		// The newest plain done archive of each site and period.
		q(fmt.Sprintf(`SELECT d.idsite, d.period, d.date1, d.date2, d.value, COALESCE(v.value, '-') FROM %[1]s d
			LEFT JOIN %[1]s v ON v.idarchive = d.idarchive AND v.name = 'nb_visits'
			WHERE d.name = 'done' AND d.idarchive = (SELECT MAX(x.idarchive) FROM %[1]s x WHERE x.name = 'done' AND x.idsite = d.idsite AND x.period = d.period AND x.date1 = d.date1 AND x.date2 = d.date2)`, "`"+tb+"`"),
			func(c []string) { archives = append(archives, strings.Join(c, " ")) })
	}
	sort.Strings(queue)
	sort.Strings(archives)
	return queue, archives
}

var archivedLineRE = regexp.MustCompile(`Archived website id (\d+), period = (\w+), date = ([0-9-]+), segment = '', (\d+) visits found`)

func archivedLines(out string) []string {
	var res []string
	for _, m := range archivedLineRE.FindAllStringSubmatch(out, -1) {
		res = append(res, strings.Join(m[1:], " "))
	}
	sort.Strings(res)
	return res
}

// The simulator is held to real Matomo: the same scenario runs on two
// copies of the real install, one through PHP and one through the
// simulator, and every step must leave the same queue, the same newest done
// flags and visit counts, the same exit codes and the same Archived lines.
// (Ordering, timings and the scheduled tasks block are not compared: the
// simulator does not imitate them.)
func TestSimulatorAgreesWithRealMatomo(t *testing.T) {
	t.Parallel()
	real, sim := realmatomo.New(t), realmatomo.New(t)
	run := map[string]consoleRunner{"real": phpRunner(t, real, "php"), "sim": phpRunner(t, sim, matomotest.Simulator(t))}
	ins := map[string]*realmatomo.Instance{"real": real, "sim": sim}
	nyDST := lastDST("America/New_York")

	type step struct {
		name  string
		setup func(in *realmatomo.Instance)
		args  []string
	}
	steps := []step{
		{name: "invalidate a deleted day and a present one", setup: func(in *realmatomo.Instance) {
			deleteArchives(t, in, 2, nyDST, nyDST, 1)
		}, args: []string{"core:invalidate-report-data", "--sites=2", "--dates=" + nyDST, "--periods=day"}},
		{name: "invalidate a range on two sites", args: []string{"core:invalidate-report-data", "--sites=1,3", "--dates=" + day(9) + "," + day(7), "--periods=day"}},
		{name: "archive the queue", args: []string{"core:archive", "--no-ansi", "--disable-scheduled-tasks"}},
		{name: "a deleted day nobody queued stays missing", setup: func(in *realmatomo.Instance) {
			deleteArchives(t, in, 4, day(5), day(5), 1)
		}, args: []string{"core:archive", "--no-ansi", "--disable-scheduled-tasks"}},
		{name: "invalidate past the log-deletion limit", setup: func(in *realmatomo.Instance) {
			in.Exec("REPLACE INTO {p}option (option_name, option_value, autoload) VALUES ('delete_logs_enable', '1', 0), ('delete_logs_older_than', '4', 0)")
		}, args: []string{"core:invalidate-report-data", "--sites=4", "--dates=" + day(6) + "," + day(3), "--periods=day", "-v"}},
		{name: "archive again", args: []string{"core:archive", "--no-ansi", "--disable-scheduled-tasks"}},
		{name: "unknown site", args: []string{"core:invalidate-report-data", "--sites=99", "--dates=" + day(3), "--periods=day"}},
	}
	for _, st := range steps {
		res := map[string][3][]string{}
		codes := map[string]int{}
		outs := map[string]string{}
		for _, which := range []string{"real", "sim"} {
			if st.setup != nil {
				st.setup(ins[which])
			}
			out, code := run[which](st.args...)
			q, a := tableState(t, ins[which])
			res[which] = [3][]string{q, a, archivedLines(out)}
			codes[which], outs[which] = code, out
		}
		if codes["real"] != codes["sim"] {
			t.Errorf("%s: exit code real %d, simulator %d", st.name, codes["real"], codes["sim"])
		}
		for i, what := range []string{"archive_invalidations rows", "newest done archives", "Archived lines"} {
			r, s := res["real"][i], res["sim"][i]
			if !slices.Equal(r, s) {
				t.Errorf("%s: %s differ\nonly real: %q\nonly sim:  %q", st.name, what, minus(r, s), minus(s, r))
			}
		}
		if strings.Contains(outs["real"], "Log Deletion limit") != strings.Contains(outs["sim"], "Log Deletion limit") {
			t.Errorf("%s: the log-deletion warning: real %v, simulator %v", st.name, strings.Contains(outs["real"], "Log Deletion limit"), strings.Contains(outs["sim"], "Log Deletion limit"))
		}
		t.Logf("%s: exit %d, %d queue rows, %d newest done archives, %d Archived lines", st.name, codes["real"], len(res["real"][0]), len(res["real"][1]), len(res["real"][2]))
		if t.Failed() {
			t.Logf("real output:\n%s\nsimulator output:\n%s", outs["real"], outs["sim"])
			return
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

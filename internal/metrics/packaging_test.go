package metrics

// Tests that keep packaging/prometheus and packaging/grafana in step with the
// metrics this package really exports.

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var (
	promDir       = filepath.Join("..", "..", "packaging", "prometheus")
	rulesFile     = filepath.Join(promDir, "matomod-rules.yml")
	rulesTestFile = filepath.Join(promDir, "matomod-rules.test.yml")
	dashboardFile = filepath.Join("..", "..", "packaging", "grafana", "matomod-dashboard.json")
	runbookBase   = "https://github.com/matomod/matomod/blob/main/README.md#"
)

// fixedLabels have a closed set of values; rules and panels must only use
// values matomod exports.
var fixedLabels = map[string]bool{"result": true, "role": true, "reason": true, "status": true, "kind": true, "repairable": true}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return rules
}

type dashPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *dashDS                  `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string  `json:"expr"`
		Datasource *dashDS `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

type dashDS struct{ Type, UID string }

type dashboard struct {
	SchemaVersion int         `json:"schemaVersion"`
	UID           string      `json:"uid"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			IncludeAll bool            `json:"includeAll"`
			Datasource *dashDS         `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// panels flattens rows.
func (d dashboard) panels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// queries returns every PromQL text in the dashboard, named for messages.
func (d dashboard) queries() map[string]string {
	q := map[string]string{}
	for _, p := range d.panels() {
		for i, tg := range p.Targets {
			q[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if m := labelValuesRe.FindStringSubmatch(v.Definition); m != nil {
			q["variable "+v.Name] = m[1]
		}
	}
	return q
}

var labelValuesRe = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// selector is a metric name with its label matchers, as used in PromQL.
type selector struct {
	name     string
	matchers []matcher
}

type matcher struct{ label, op, value string }

var (
	aggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
		"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
		"limitk": true, "limit_ratio": true}
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
	labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
)

// selectors lists the metric selectors of a PromQL expression. It is a
// small lexer, not a parser: enough for the expressions matomod ships
// (TestSelectors pins what it understands), with no new dependency.
func selectors(expr string) ([]selector, error) {
	s := expr
	var out []selector
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	skipSpace := func(i int) int {
		for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
			i++
		}
		return i
	}
	closing := func(i int, open, close byte) (int, error) { // i at open; returns index after close
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '"', '\'', '`':
				end, err := skipString(s, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case close:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("%q: no %q after offset %d", expr, close, i)
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '$': // Grafana variable: $name, ${name}
			i++
			if i < len(s) && s[i] == '{' {
				end, err := closing(i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = end
			}
			for i < len(s) && isIdent(s[i], false) {
				i++
			}
		case c == '[':
			end, err := closing(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = end
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i], false) || s[i] == '.') {
				i++
			}
		case isIdent(c, true):
			j := i
			for j < len(s) && isIdent(s[j], false) {
				j++
			}
			word, k := s[i:j], skipSpace(j)
			next := byte(0)
			if k < len(s) {
				next = s[k]
			}
			switch {
			case labelLists[word] && next == '(':
				end, err := closing(k, '(', ')')
				if err != nil {
					return nil, err
				}
				i = end
			case keywords[word] || aggregations[word] || next == '(':
				i = j
			default:
				sel := selector{name: word}
				i = j
				if next == '{' {
					end, err := closing(k, '{', '}')
					if err != nil {
						return nil, err
					}
					ms, err := parseMatchers(s[k+1 : end-1])
					if err != nil {
						return nil, fmt.Errorf("%q: %w", expr, err)
					}
					sel.matchers, i = ms, end
				}
				out = append(out, sel)
			}
		case c == '{':
			return nil, fmt.Errorf("%q: selector without a metric name", expr)
		default:
			i++
		}
	}
	return out, nil
}

func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		if s[j] == '\\' && q != '`' {
			j++
			continue
		}
		if s[j] == q {
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%q: unterminated string", s)
}

var matcherRe = regexp.MustCompile(`^\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*(?:,|$)`)

func parseMatchers(s string) ([]matcher, error) {
	var out []matcher
	for strings.TrimSpace(s) != "" {
		m := matcherRe.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("cannot read label matchers %q", s)
		}
		v, err := strconv.Unquote(m[3])
		if err != nil {
			return nil, err
		}
		out = append(out, matcher{m[1], m[2], v})
		s = s[len(m[0]):]
	}
	return out, nil
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want string
	}{
		{`up{job="matomod"} == 0 or absent(matomod_build_info)`, `up{job="matomod"} matomod_build_info`},
		{`sum without (kind, repairable) (matomo_archive_gaps_all_sites{repairable="true"}) > 0`, `matomo_archive_gaps_all_sites{repairable="true"}`},
		{`time() - max by (instance) (x_seconds{instance=~"$instance", a!="b,c}"} > 0) > 3 * 3600`, `x_seconds{instance=~"$instance",a!="b,c}"}`},
		{`sum(increase(a_total{r=~"x|y"}[$__interval])) / ignoring(le) b offset 3h and on (job) c`, `a_total{r=~"x|y"} b c`},
		{`histogram_quantile(0.95, sum by (le) (increase(h_bucket[6h]))) * 1e3`, `h_bucket`},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, `m`},
		{`${datasource} topk(5, sum by (idsite) (g))`, `g`},
	} {
		sels, err := selectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			g := s.name
			if len(s.matchers) > 0 {
				var ms []string
				for _, m := range s.matchers {
					ms = append(ms, m.label+m.op+strconv.Quote(m.value))
				}
				g += "{" + strings.Join(ms, ",") + "}"
			}
			got = append(got, g)
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("selectors(%s) = %s, want %s", tc.expr, g, tc.want)
		}
	}
	for _, bad := range []string{`x{a="b"`, `x{a=b}`, `{__name__="x"}`, `x{a="b}`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%s): no error", bad)
		}
	}
}

// exported describes what a registry fed with every kind of value exports:
// family name → label name → values seen.
func exported(t *testing.T) map[string]map[string]map[string]bool {
	t.Helper()
	_, reg := feed(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]map[string]map[string]bool{}
	add := func(name string, labels map[string]map[string]bool) {
		if fams[name] == nil {
			fams[name] = map[string]map[string]bool{}
		}
		for l, vs := range labels {
			if fams[name][l] == nil {
				fams[name][l] = map[string]bool{}
			}
			for v := range vs {
				fams[name][l][v] = true
			}
		}
	}
	for _, mf := range mfs {
		labels := map[string]map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] == nil {
					labels[l.GetName()] = map[string]bool{}
				}
				labels[l.GetName()][l.GetValue()] = true
			}
		}
		name := mf.GetName()
		switch mf.GetType().String() {
		case "HISTOGRAM":
			add(name+"_bucket", labels)
			fams[name+"_bucket"]["le"] = map[string]bool{}
			add(name+"_sum", labels)
			add(name+"_count", labels)
		case "SUMMARY":
			add(name, labels)
			fams[name]["quantile"] = map[string]bool{}
			add(name+"_sum", labels)
			add(name+"_count", labels)
		default:
			add(name, labels)
		}
	}
	return fams
}

// TestRulesAndDashboardUseExportedMetrics fails when a rule or panel names a
// metric, label or fixed label value that matomod does not export.
func TestRulesAndDashboardUseExportedMetrics(t *testing.T) {
	fams := exported(t)
	queries := map[string]string{}
	for i, r := range readRules(t) {
		queries[fmt.Sprintf("rule %d (%s)", i, r.Alert+r.Record)] = r.Expr
	}
	for where, q := range readDashboard(t).queries() {
		queries[where] = q
	}
	used := map[string]bool{}
	for where, q := range queries {
		sels, err := selectors(q)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: no metric in %q", where, q)
		}
		for _, s := range sels {
			used[s.name] = true
			if s.name == "up" { // made by Prometheus for every target
				continue
			}
			labels, ok := fams[s.name]
			if !ok {
				t.Errorf("%s: metric %s is not exported by matomod", where, s.name)
				continue
			}
			for _, m := range s.matchers {
				if m.label == "job" || m.label == "instance" { // target labels
					continue
				}
				values, ok := labels[m.label]
				if !ok {
					t.Errorf("%s: %s has no label %q", where, s.name, m.label)
					continue
				}
				if !fixedLabels[m.label] || strings.Contains(m.value, "$") || m.op[0] == '!' {
					continue
				}
				alts := []string{m.value}
				if m.op == "=~" {
					alts = strings.Split(m.value, "|")
				}
				for _, v := range alts {
					if !values[v] {
						t.Errorf("%s: %s{%s} never has the value %q", where, s.name, m.label, v)
					}
				}
			}
		}
	}
	for _, v := range readDashboard(t).Templating.List {
		if m := labelValuesRe.FindStringSubmatch(v.Definition); m != nil {
			sels, err := selectors(m[1])
			if err != nil || len(sels) != 1 {
				t.Errorf("variable %s: cannot read %q", v.Name, v.Definition)
				continue
			}
			if _, ok := fams[sels[0].name][m[2]]; !ok && m[2] != "instance" && m[2] != "job" {
				t.Errorf("variable %s: %s has no label %q", v.Name, sels[0].name, m[2])
			}
		}
	}
	// The per-site gap series must be what the idsite variable and the gap
	// alerts read, so they have to be in the check above.
	for _, name := range []string{"matomo_archive_gaps", "matomo_archive_gaps_all_sites", "matomo_archive_segment_gaps_all_sites", "matomod_archive_runs_total"} {
		if !used[name] {
			t.Errorf("%s is used by no rule or panel", name)
		}
	}
}

func TestAlertRulesAreDocumented(t *testing.T) {
	var docs string
	for _, f := range []string{filepath.Join(promDir, "RUNBOOK.md"), filepath.Join("..", "..", "README.md")} {
		if b, err := os.ReadFile(f); err == nil {
			docs += string(b)
		}
	}
	seen := map[string]bool{}
	for _, r := range readRules(t) {
		if r.Alert == "" {
			continue
		}
		seen[r.Alert] = true
		if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
			t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" {
			t.Errorf("%s: no summary", r.Alert)
		}
		if !strings.Contains(r.Annotations["description"], "journalctl -u matomod") {
			t.Errorf("%s: the description does not name the journalctl command that shows the cause", r.Alert)
		}
		anchor := "alert-" + strings.ToLower(r.Alert)
		if got := r.Annotations["runbook_url"]; got != runbookBase+anchor {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, got, runbookBase+anchor)
		}
		if !strings.Contains(docs, "### Alert: "+r.Alert+"\n") {
			t.Errorf("%s: no heading \"### Alert: %s\" in RUNBOOK.md or README.md", r.Alert, r.Alert)
		}
	}
	for _, name := range []string{"MatomoArchiveGap", "MatomoArchiveGapNotRepairable", "MatomoArchiveSegmentGap", "MatomoArchiveSegmentGapNotRepairable", "MatomoArchiveNotSucceeding",
		"MatomoArchiveFailing", "MatomoArchiveRunTooLong", "MatomoInvalidationQueueStuck", "MatomoArchivingPaused",
		"MatomoCollectionGap", "MatomodDown", "MatomodGapScanFailing"} {
		if !seen[name] {
			t.Errorf("alert %s is missing from %s", name, rulesFile)
		}
	}
}

// TestAlertTestsCoverFiringAndNotFiring checks the promtool test file has,
// for every alert, a case where it fires and one where it must not.
func TestAlertTestsCoverFiringAndNotFiring(t *testing.T) {
	b, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, r := range readRules(t) {
		if r.Alert != "" && (!fires[r.Alert] || !silent[r.Alert]) {
			t.Errorf("%s: tests firing: %v, not firing: %v; want both", r.Alert, fires[r.Alert], silent[r.Alert])
		}
	}
}

func TestPromtoolRules(t *testing.T) {
	tool := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "matomod-rules.yml"},
		{"test", "rules", "matomod-rules.test.yml"},
	} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = promDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestDashboardQueriesParse has promtool parse every panel query, with the
// Grafana variables replaced, as recording rules.
func TestDashboardQueriesParse(t *testing.T) {
	tool := promtool(t)
	vars := strings.NewReplacer("$__interval", "1h", "$__rate_interval", "5m", "$__range", "1d",
		"$instance", ".*", "$idsite", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	qs := readDashboard(t).queries()
	for i, where := range slices.Sorted(maps.Keys(qs)) {
		q := vars.Replace(qs[where])
		fmt.Fprintf(&b, "      - record: dashboard_query_%d\n        expr: %s\n", i, strconv.Quote(q))
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.SchemaVersion < 36 || d.UID == "" {
		t.Errorf("schemaVersion %d, uid %q: want a current Grafana JSON model with a fixed uid", d.SchemaVersion, d.UID)
	}
	vars := map[string]int{}
	for i, v := range d.Templating.List {
		vars[v.Name] = i
	}
	ds, ok := vars["datasource"]
	if !ok || d.Templating.List[ds].Type != "datasource" || string(d.Templating.List[ds].Query) != `"prometheus"` {
		t.Error("no templating variable datasource of type datasource for Prometheus")
	}
	if i, ok := vars["idsite"]; !ok || !d.Templating.List[i].IncludeAll ||
		!strings.HasPrefix(d.Templating.List[i].Definition, "label_values(matomo_archive_gaps") {
		t.Error("no idsite variable with All, from label_values(matomo_archive_gaps…, idsite)")
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query ${datasource}", v.Name)
		}
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range d.panels() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, g)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap", other, p.Title)
					break
				}
				used[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query does not use ${datasource}", p.Title)
			}
		}
	}
}

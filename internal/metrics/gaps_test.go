package metrics

import (
	"testing"

	"github.com/matomod/matomod/internal/gapdetect"
)

// A site the scan skipped (unreadable time zone) shows in a metric: its
// gaps are unknown, which an alert must be able to tell from "no gaps".
func TestSitesSkippedMetric(t *testing.T) {
	m, reg := newTest(t)
	compare(t, reg, `# HELP matomod_gap_scan_sites_skipped Sites the latest gap scan could not check (e.g. a time zone matomod cannot read): their gaps are unknown; `+"`matomod gaps`"+` names them.
# TYPE matomod_gap_scan_sites_skipped gauge
matomod_gap_scan_sites_skipped 0
`, "matomod_gap_scan_sites_skipped")
	r := &gapdetect.Result{SiteErrors: []gapdetect.SiteError{{IDSite: 3, Error: `site 3: site time zone "Mars/Olympus" is unknown`}}}
	m.SetGaps(GapSnapshotOf(r))
	compare(t, reg, `# HELP matomod_gap_scan_sites_skipped Sites the latest gap scan could not check (e.g. a time zone matomod cannot read): their gaps are unknown; `+"`matomod gaps`"+` names them.
# TYPE matomod_gap_scan_sites_skipped gauge
matomod_gap_scan_sites_skipped 1
`, "matomod_gap_scan_sites_skipped")
}

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/realmatomo"
)

// enableLogDeletion turns Matomo's "delete old raw data" on, as its privacy
// settings page does (it writes the delete_logs_* option rows).
func enableLogDeletion(t *testing.T, in *realmatomo.Instance, days int) {
	t.Helper()
	p := url.Values{"enableDeleteLogs": {"1"}, "deleteLogsOlderThan": {fmt.Sprint(days)}, "passwordConfirmation": {in.Manifest.Password}}
	if err := in.Server().API(context.Background(), in.Manifest.Token, "PrivacyManager.setDeleteLogsSettings", p, nil); err != nil {
		t.Fatal(err)
	}
}

// sameWeekLimit is a log-deletion setting N whose boundary day today−N is
// not a Monday, so that today−N and the day before share a week.
func sameWeekLimit() int {
	for n := 3; ; n++ {
		d, _ := time.Parse(time.DateOnly, day(n))
		if d.Weekday() != time.Monday {
			return n
		}
	}
}

// Regression (issue 11): Matomo refuses to invalidate every day earlier
// than today (UTC) − delete_logs_older_than; matomod called the two days
// before that boundary repairable and re-invalidated them in vain. The day
// at the boundary is repaired; the day before it is reported unrepairable,
// never handed to the console, and its archive is left as it was.
func TestRealLogDeletionBoundary(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	ctx := context.Background()
	n := sameWeekLimit()
	enableLogDeletion(t, in, n)
	edge, before := day(n), day(n+1)
	deleteArchives(t, in, 1, edge, edge, 1)
	// The day before the limit is stale: one more visit tracked into it
	// after it was archived. Its archive stays usable, so rebuilding the
	// week of the boundary day reuses it.
	at, _ := time.Parse(time.DateOnly, before)
	if err := in.Server().Track(ctx, in.Manifest.Token, []realmatomo.Visit{{IDSite: 1, At: at.Add(15 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	cfg := config(t, in, "")

	res := gaps(t, cfg, "--sites=1")
	got := gapStrings(res.Gaps)
	want := []string{"1 " + before + " stale unrepairable", "1 " + edge + " missing repairable"}
	if !slices.Equal(got, want) {
		t.Fatalf("gaps %q, want %q", got, want)
	}
	for _, g := range res.Gaps {
		if g.Date == before && !strings.Contains(g.Reason, "log-deletion") {
			t.Errorf("reason for %s: %q", before, g.Reason)
		}
	}

	code, out, errOut := cli(t, cfg, "repair", "--sites=1")
	if code != 1 || !strings.Contains(out, "repaired: 1 day(s)") || strings.Contains(out, "--dates="+before) {
		t.Fatalf("repair: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, want := visitsOf(t, in, 1, "day", edge), in.Manifest.Visits["1 "+edge]; got != want {
		t.Errorf("%s after repair: VisitsSummary %d, want %d", edge, got, want)
	}
	if got, want := visitsOf(t, in, 1, "day", before), in.Manifest.Visits["1 "+before]; got != want {
		t.Errorf("%s past the limit: VisitsSummary %d, want its old archive's %d", before, got, want)
	}
}

// Matomo rebuilds the week (and month) of every day it re-archives, and a
// day in that week without a usable archive is rebuilt from raw data too
// (observed: 5.0.2). So a day in the same week as a missing day past the
// log-deletion limit is not repairable either: repairing it would rebuild
// the older day from raw data that may already be purged.
func TestRealLogDeletionProtectsTheWeek(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	n := sameWeekLimit()
	enableLogDeletion(t, in, n)
	edge, before := day(n), day(n+1)
	deleteArchives(t, in, 1, edge, edge, 1)
	deleteArchives(t, in, 1, before, before, 1)
	cfg := config(t, in, "")

	res := gaps(t, cfg, "--sites=1")
	want := []string{"1 " + before + " missing unrepairable", "1 " + edge + " missing unrepairable"}
	if got := gapStrings(res.Gaps); !slices.Equal(got, want) {
		t.Fatalf("gaps %q, want %q", got, want)
	}
	for _, g := range res.Gaps {
		if g.Date == edge && !strings.Contains(g.Reason, before) {
			t.Errorf("reason for %s does not name %s: %q", edge, before, g.Reason)
		}
	}
	if code, out, errOut := cli(t, cfg, "repair", "--sites=1"); code != 1 || strings.Contains(out, "core:invalidate-report-data") {
		t.Fatalf("repair: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := visitsOf(t, in, 1, "day", before); got != 0 {
		t.Errorf("%s was rebuilt (%d visits) from raw data past the log-deletion limit", before, got)
	}
}

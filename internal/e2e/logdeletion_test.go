package e2e

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/matomod/matomod/internal/realmatomo"
)

// Regression (issue 11): Matomo refuses to invalidate every day earlier
// than today (UTC) − delete_logs_older_than; matomod called the two days
// before that boundary repairable and re-invalidated them in vain. The day
// at the boundary is repaired; the day before it is reported unrepairable
// and never handed to the console.
func TestRealLogDeletionBoundary(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	ctx := context.Background()
	const n = 5
	p := url.Values{"enableDeleteLogs": {"1"}, "deleteLogsOlderThan": {fmt.Sprint(n)}, "passwordConfirmation": {in.Manifest.Password}}
	if err := in.Server().API(ctx, in.Manifest.Token, "PrivacyManager.setDeleteLogsSettings", p, nil); err != nil {
		t.Fatal(err)
	}
	edge, before := day(n), day(n+1)
	deleteArchives(t, in, 1, edge, edge, 1)
	deleteArchives(t, in, 1, before, before, 1)
	cfg := config(t, in, "")

	res := gaps(t, cfg, "--sites=1")
	got := gapStrings(res.Gaps)
	want := []string{"1 " + before + " missing unrepairable", "1 " + edge + " missing repairable"}
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
	if got := visitsOf(t, in, 1, "day", before); got != 0 {
		t.Errorf("%s was rebuilt (%d visits): it is past Matomo's log-deletion limit", before, got)
	}
}

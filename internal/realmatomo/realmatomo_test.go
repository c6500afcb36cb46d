package realmatomo

import (
	"context"
	"fmt"
	"testing"
)

// The template is what every real-Matomo test starts from: each planted
// site-day has exactly one good day archive whose nb_visits is the number of
// visits tracked into that local day, and no other day has one.
func TestTemplateArchivedEveryPlantedDay(t *testing.T) {
	in := New(t)
	ctx := context.Background()
	got := map[string]int{}
	rows, err := in.DB.QueryContext(ctx, `SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE ?`, in.Prefix+"archive_numeric_%")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	for _, tb := range tables {
		q := fmt.Sprintf(`SELECT d.idsite, d.date1, d.value, COALESCE(v.value, 0) FROM %[1]s d LEFT JOIN %[1]s v ON v.idarchive = d.idarchive AND v.name = 'nb_visits'
			WHERE d.period = 1 AND d.name = 'done'`, "`"+tb+"`")
		rows, err := in.DB.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var site int
			var date string
			var done int
			var visits float64
			if err := rows.Scan(&site, &date, &done, &visits); err != nil {
				t.Fatal(err)
			}
			if done != 1 {
				t.Errorf("site %d %s: done = %d, want 1", site, date, done)
			}
			got[fmt.Sprintf("%d %s", site, date[:10])] = int(visits)
		}
		rows.Close()
	}
	for k, want := range in.Manifest.Visits {
		if got[k] != want {
			t.Errorf("%s: archived nb_visits %d, tracked %d", k, got[k], want)
		}
	}
	for k, n := range got {
		if _, ok := in.Manifest.Visits[k]; !ok {
			t.Errorf("%s: archived (%d visits) but nothing was tracked", k, n)
		}
	}
	t.Logf("template: %d site-days, built in %.0f s", len(in.Manifest.Visits), in.Manifest.BuildSeconds)
}

package matomotest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Tables matomod reads (and the simulator writes), compared with the schema
// captured from a real Matomo 5 install.
var comparedTables = []string{"site", "log_visit", "option", "archive_invalidations", "sequence",
	"archive_numeric_2026_11", "archive_blob_2026_11"}

func TestSchemaMatchesRealMatomo(t *testing.T) {
	fx := Fixtures(t)
	raw, err := os.ReadFile(filepath.Join(fx, "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	ours := New(t)
	if err := CreateArchiveTables(context.Background(), ours.DB, ours.Prefix, 2026, 11); err != nil {
		t.Fatal(err)
	}
	real := New(t) // a second throw-away DB holding the real DDL
	for _, tbl := range comparedTables {
		real.Exec("DROP TABLE IF EXISTS `matomo_" + tbl + "`")
		ddl := extractCreate(t, string(raw), "matomo_"+tbl)
		real.Exec(ddl)
	}
	for _, tbl := range comparedTables {
		want := describe(t, real.DB, "matomo_"+tbl)
		got := describe(t, ours.DB, "matomo_"+tbl)
		if !strings.Contains(want, "col ") || !strings.Contains(want, "idx PRIMARY") {
			t.Fatalf("could not read real schema of %s: %q", tbl, want)
		}
		if want != got {
			t.Errorf("table %s differs from real Matomo's:\nreal:\n%s\nours:\n%s", tbl, want, got)
		}
	}
}

func extractCreate(t *testing.T, schema, table string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)CREATE TABLE `" + table + "` \\(.*?\\n\\) [^\\n]*")
	m := re.FindString(schema)
	if m == "" {
		t.Fatalf("schema.sql has no CREATE TABLE for %s", table)
	}
	return m
}

// describe lists columns (name, type, nullability) and index parts.
func describe(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	var b strings.Builder
	rows, err := db.Query(`SELECT column_name, column_type, is_nullable FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position`, table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n, ty, null string
		rows.Scan(&n, &ty, &null)
		fmt.Fprintf(&b, "col %s %s null=%s\n", n, ty, null)
	}
	rows.Close()
	rows, err = db.Query(`SELECT index_name, seq_in_index, column_name, COALESCE(sub_part, 0), collation FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = ? ORDER BY index_name, seq_in_index`, table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n, col string
		var seq, sub int
		var coll sql.NullString
		rows.Scan(&n, &seq, &col, &sub, &coll)
		fmt.Fprintf(&b, "idx %s %d %s %d %s\n", n, seq, col, sub, coll.String)
	}
	rows.Close()
	return b.String()
}

// testdata/fixtures is a copy of ../shared/fixtures, the source; when both
// are here they must agree (scripts/sync-fixtures.sh copies them again).
func TestFixturesMatchShared(t *testing.T) {
	shared := SharedDir()
	if shared == "" {
		t.Skip("../shared is not beside this clone: nothing to compare with")
	}
	src := filepath.Join(shared, "fixtures")
	dst := Fixtures(t)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".keep" {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("testdata/fixtures/%s differs from ../shared/fixtures: run scripts/sync-fixtures.sh", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package matomo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeINI(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ConfigINIPath(dir), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReadConfigINI(t *testing.T) {
	dir := writeINI(t, `; <?php exit; ?> DO NOT REMOVE THIS LINE
; file automatically generated or modified by Matomo
[database]
host = "db.internal:3307"
username = "matomo"
password = "p;a#s s\"w"
dbname = matomo
tables_prefix = "piwik_"
charset = "utf8mb4"
enable_ssl = 1
ssl_ca = "/etc/ssl/ca.pem"

[General]
maintenance_mode = 1
trusted_hosts[] = "a.example.org"
trusted_hosts[] = "b.example.org"

[Tracker]
record_statistics = 0

[Deletelogs]
delete_logs_enable = 1
delete_logs_older_than = 90
`)
	c, err := ReadConfigINI(dir)
	if err != nil {
		t.Fatal(err)
	}
	db := c.DB
	if db.Host != "db.internal" || db.Port != 3307 || db.User != "matomo" || string(db.Password) != `p;a#s s"w` ||
		db.DBName != "matomo" || db.TablesPrefix != "piwik_" || !db.EnableSSL || db.SSLCA != "/etc/ssl/ca.pem" {
		t.Fatalf("database section: %+v (password %q)", db, string(db.Password))
	}
	if !c.MaintenanceMode || c.RecordStatistics || !c.DeleteLogsEnable || c.DeleteLogsOlderThan != 90 {
		t.Fatalf("flags: %+v", c)
	}
	// The password never prints.
	for _, s := range []string{fmt.Sprint(db), fmt.Sprintf("%+v", db), fmt.Sprintf("%v", c)} {
		if strings.Contains(s, "p;a#s") {
			t.Fatalf("password printed: %s", s)
		}
	}
}

func TestReadConfigINIDefaults(t *testing.T) {
	dir := writeINI(t, "; <?php exit; ?> DO NOT REMOVE THIS LINE\n[database]\nhost = localhost\nusername = root\ndbname = m\n")
	c, err := ReadConfigINI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.DB.TablesPrefix != "matomo_" || c.MaintenanceMode || !c.RecordStatistics || c.DeleteLogsEnable || c.DeleteLogsOlderThan != 180 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestReadConfigINIErrors(t *testing.T) {
	cases := []struct{ body, want string }{
		{"; <?php exit; ?>\n[General]\nfoo = 1\n", "no [database] section"},
		{"; <?php exit; ?>\n[database]\ntables_prefix = \"x`;drop\"\n", "tables_prefix"},
		{"; <?php exit; ?>\n[database]\nport = http\n", `port = "http" is not a port number`},
		{"; <?php exit; ?>\n[database\nhost = x\n", "malformed INI"},
	}
	for _, c := range cases {
		_, err := ReadConfigINI(writeINI(t, c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want one line containing %q", c.body, err, c.want)
		}
	}
	_, err := ReadConfigINI(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--matomo.dir") {
		t.Errorf("missing file: %v", err)
	}
	if os.Getuid() != 0 {
		dir := writeINI(t, "[database]\n")
		os.Chmod(ConfigINIPath(dir), 0)
		if _, err := ReadConfigINI(dir); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable: %v", err)
		}
	}
}

func TestCodeVersion(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "core"), 0o755)
	os.WriteFile(filepath.Join(dir, "core", "Version.php"), []byte("<?php\nfinal class Version\n{\n    const VERSION = '5.1.0-b2';\n"), 0o644)
	v, err := CodeVersion(dir)
	if err != nil || v != "5.1.0-b2" {
		t.Fatalf("got %q, %v", v, err)
	}
	if _, err := CodeVersion(t.TempDir()); err == nil {
		t.Fatal("missing Version.php accepted")
	}
}

// globalINI is the shape of the global.ini.php every Matomo ships: every
// [database] key present and empty, defaults for the flags matomod reads.
const globalINI = `; <?php exit; ?> DO NOT REMOVE THIS LINE
[database]
host =
username =
password =
dbname =
tables_prefix =
port = 3306
adapter = PDO\MYSQL
type = InnoDB
schema = Mysql
charset = utf8

[General]
maintenance_mode = 0

[Tracker]
record_statistics = 1

[Deletelogs]
delete_logs_enable = 0
delete_logs_older_than = 180
`

// Regression: global.ini.php's empty keys shadowed config.ini.php's, so
// matomod read an empty database name and missed maintenance mode on every
// real install.
func TestReadConfigINIOverGlobalKeyByKey(t *testing.T) {
	dir := writeINI(t, `; <?php exit; ?> DO NOT REMOVE THIS LINE
[database]
host = "127.0.0.1"
username = "matomo"
password = "pw"
dbname = "matomo_db"
tables_prefix = "matomo_"

[General]
maintenance_mode = 1

[Tracker]
record_statistics = 0

[Deletelogs]
delete_logs_enable = 1
`)
	if err := os.WriteFile(filepath.Join(dir, "config", "global.ini.php"), []byte(globalINI), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ReadConfigINI(dir)
	if err != nil {
		t.Fatal(err)
	}
	db := c.DB
	if db.Host != "127.0.0.1" || db.User != "matomo" || string(db.Password) != "pw" || db.DBName != "matomo_db" || db.TablesPrefix != "matomo_" {
		t.Errorf("database: %+v (global.ini.php's empty keys must not win)", db)
	}
	if db.Port != 3306 || db.Charset != "utf8" {
		t.Errorf("keys absent from config.ini.php keep global's value: port %d charset %q", db.Port, db.Charset)
	}
	if !c.MaintenanceMode || c.RecordStatistics || !c.DeleteLogsEnable || c.DeleteLogsOlderThan != 180 {
		t.Errorf("flags: maintenance %v record %v delete %v/%d", c.MaintenanceMode, c.RecordStatistics, c.DeleteLogsEnable, c.DeleteLogsOlderThan)
	}

	// Only global.ini.php says maintenance_mode: its value holds.
	dir2 := writeINI(t, "; <?php exit; ?>\n[database]\ndbname = m\n")
	os.WriteFile(filepath.Join(dir2, "config", "global.ini.php"), []byte(strings.Replace(globalINI, "maintenance_mode = 0", "maintenance_mode = 1", 1)), 0o644)
	if c, err := ReadConfigINI(dir2); err != nil || !c.MaintenanceMode || c.DB.Host != "127.0.0.1" {
		t.Errorf("global-only value: %+v, %v", c, err)
	}
}

// Regression: a malformed password line was echoed in the error
// ("missing closing key quote from \"`Secret…").
func TestReadConfigINIErrorHidesValues(t *testing.T) {
	for _, body := range []string{
		"; <?php exit; ?>\n[database]\nhost = x\npassword = `Secret\n",
		"; <?php exit; ?>\n[database]\nhost = x\n\"password = Secret\n",
	} {
		_, err := ReadConfigINI(writeINI(t, body))
		if err == nil {
			t.Errorf("%q accepted", body)
			continue
		}
		if strings.Contains(err.Error(), "Secret") || strings.Contains(err.Error(), "\n") {
			t.Errorf("error shows the value or spans lines: %v", err)
		}
		if !strings.Contains(err.Error(), "malformed INI") {
			t.Errorf("error does not say what is wrong: %v", err)
		}
	}
}

// Issue 14 (segments): [General] process_new_segments_from, merged key by
// key: config.ini.php's value wins, global.ini.php's holds without one.
func TestReadConfigINIProcessNewSegmentsFrom(t *testing.T) {
	global := "[General]\nmaintenance_mode = 0\nprocess_new_segments_from = \"beginning_of_time\"\n"
	dir := writeINI(t, "; <?php exit; ?>\n[database]\ndbname = m\n[General]\nmaintenance_mode = 0\n")
	os.WriteFile(filepath.Join(dir, "config", "global.ini.php"), []byte(global), 0o644)
	if c, err := ReadConfigINI(dir); err != nil || c.ProcessNewSegmentsFrom != "beginning_of_time" {
		t.Errorf("global-only value: %+v, %v", c, err)
	}
	dir2 := writeINI(t, "; <?php exit; ?>\n[database]\ndbname = m\n[General]\nprocess_new_segments_from = \"last30\"\n")
	os.WriteFile(filepath.Join(dir2, "config", "global.ini.php"), []byte(global), 0o644)
	if c, err := ReadConfigINI(dir2); err != nil || c.ProcessNewSegmentsFrom != "last30" || c.MaintenanceMode {
		t.Errorf("config.ini.php's value: %+v, %v", c, err)
	}
}

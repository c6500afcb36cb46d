package realmatomo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Sites are the template's sites: whole-hour, half-hour, manual-offset and
// both DST conventions.
var Sites = []Site{
	{1, "Site UTC", "UTC"},
	{2, "Site NewYork", "America/New_York"},
	{3, "Site Kolkata", "Asia/Kolkata"},
	{4, "Site Offset", "UTC+5.5"},
	{5, "Site Berlin", "Europe/Berlin"},
}

// RecentDays is how many days before today get visits.
const RecentDays = 12

// Location is a site's time zone as Go reads it (Matomo's "UTC+5.5" is a
// fixed offset).
func Location(tz string) *time.Location {
	if strings.HasPrefix(tz, "UTC") && len(tz) > 3 {
		var h float64
		fmt.Sscan(tz[3:], &h)
		return time.FixedZone(tz, int(h*3600))
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return time.UTC
	}
	return loc
}

// lastDSTDay is the latest local day before today whose length is not 24 h.
func lastDSTDay(loc *time.Location, today time.Time) time.Time {
	for d := today.AddDate(0, 0, -1); d.After(today.AddDate(-1, 0, 0)); d = d.AddDate(0, 0, -1) {
		start := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, loc)
		end := time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc)
		if end.Sub(start) != 24*time.Hour {
			return d
		}
	}
	return time.Time{}
}

// Plan lists the visits the template tracks, as of now: every site gets
// visits on each of the last RecentDays local days and around the latest DST
// switches of New York and Berlin, including 00:05 and 23:55 local time.
func Plan(now time.Time) []Visit {
	todayUTC := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	days := map[string]time.Time{}
	for i := 1; i <= RecentDays; i++ {
		d := todayUTC.AddDate(0, 0, -i)
		days[d.Format(time.DateOnly)] = d
	}
	for _, tz := range []string{"America/New_York", "Europe/Berlin"} {
		if d := lastDSTDay(Location(tz), todayUTC); !d.IsZero() {
			for _, dd := range []time.Time{d.AddDate(0, 0, -1), d, d.AddDate(0, 0, 1)} {
				days[dd.Format(time.DateOnly)] = dd
			}
		}
	}
	keys := make([]string, 0, len(days))
	for k := range days {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Visit
	for _, s := range Sites {
		loc := Location(s.Timezone)
		for i, k := range keys {
			d := days[k]
			at := func(h, m int) time.Time { return time.Date(d.Year(), d.Month(), d.Day(), h, m, 0, 0, loc) }
			times := []time.Time{at(0, 5), at(9, 30), at(14, 0), at(23, 55)}
			for j := 0; j < (s.ID+i)%3; j++ {
				times = append(times, at(16, 10*j+5))
			}
			for _, tm := range times {
				if tm.Before(now.Add(-10 * time.Minute)) {
					out = append(out, Visit{IDSite: s.ID, At: tm.UTC()})
				}
			}
		}
	}
	return out
}

// LocalDay is the site-local day of a visit.
func LocalDay(tz string, at time.Time) string { return at.In(Location(tz)).Format(time.DateOnly) }

func build(ctx context.Context, dir, dbName string, now time.Time, logf func(string, ...any)) (*Template, error) {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "matomo")
	if err := unpack(ctx, Tarball(), dir, src); err != nil {
		return nil, err
	}
	dbc, _, admin, err := openAdmin()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+dbName+"`"); err != nil {
		return nil, err
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+dbName+"` CHARACTER SET utf8mb4"); err != nil {
		return nil, err
	}
	dbc.Name = dbName
	srv, err := StartServer(ctx, src)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	m := Manifest{Harness: harnessVersion, Built: now, Today: now.Format(time.DateOnly), DBName: dbName,
		Prefix: dbc.Prefix, User: "admin", Password: "matomod-test-Secret-1", Sites: Sites, Visits: map[string]int{}}
	logf("real Matomo: running the web installer")
	if m.Token, err = srv.install(ctx, dbc, m.User, m.Password); err != nil {
		return nil, err
	}
	for _, kv := range [][2]string{
		{"browser_archiving_disabled_enforce", "1"}, {"enable_browser_archiving_triggering", "0"},
		{"enable_trusted_host_check", "0"}, {"enable_internet_features", "0"},
	} {
		if _, err := console(ctx, src, "config:set", "--section=General", "--key="+kv[0], "--value="+kv[1]); err != nil {
			return nil, err
		}
	}
	for _, s := range Sites[1:] {
		var id struct {
			Value int `json:"value"`
		}
		p := url.Values{"siteName": {s.Name}, "urls": {fmt.Sprintf("http://site%d.example.org", s.ID)}, "timezone": {s.Timezone}}
		if err := srv.API(ctx, m.Token, "SitesManager.addSite", p, &id); err != nil {
			return nil, err
		}
		if id.Value != s.ID {
			return nil, fmt.Errorf("SitesManager.addSite %s gave id %d, want %d", s.Name, id.Value, s.ID)
		}
	}
	// ts_created bounds what Matomo archives: move it before the visits.
	if _, err := admin.ExecContext(ctx, "UPDATE `"+dbName+"`.`"+m.Prefix+"site` SET ts_created = ?", now.AddDate(0, -3, 0).Format(time.DateTime)); err != nil {
		return nil, err
	}
	visits := Plan(now)
	logf("real Matomo: tracking %d backdated visits", len(visits))
	if err := srv.Track(ctx, m.Token, visits); err != nil {
		return nil, err
	}
	first, last := "9999", ""
	for _, v := range visits {
		d := LocalDay(Sites[v.IDSite-1].Timezone, v.At)
		m.Visits[fmt.Sprintf("%d %s", v.IDSite, d)]++
		first, last = min(first, d), max(last, d)
	}
	m.FirstDay, m.LastDay = first, last
	logf("real Matomo: archiving %s..%s", first, last)
	if _, err := console(ctx, src, "core:invalidate-report-data", "--dates="+first+","+last, "--sites=1,2,3,4,5", "--periods=day"); err != nil {
		return nil, err
	}
	if out, err := console(ctx, src, "core:archive", "--no-ansi", "--url="+srv.URL); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	m.BuildSeconds = time.Since(start).Seconds()
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		return nil, err
	}
	logf("real Matomo: template ready in %.0f s", m.BuildSeconds)
	return &Template{Dir: src, Manifest: m}, nil
}

// unpack extracts a .tar.gz release (or copies a directory) and moves the
// folder holding `console` to dst.
func unpack(ctx context.Context, release, tmp, dst string) error {
	st, err := os.Stat(release)
	if err != nil {
		return err
	}
	if st.IsDir() {
		out, err := exec.CommandContext(ctx, "cp", "-a", release, dst).CombinedOutput()
		if err != nil {
			return fmt.Errorf("copying %s: %v: %s", release, err, out)
		}
		return nil
	}
	x := filepath.Join(tmp, "unpack")
	if err := os.MkdirAll(x, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xzf", release, "-C", x).CombinedOutput(); err != nil {
		return fmt.Errorf("unpacking %s: %v: %s", release, err, out)
	}
	for _, cand := range []string{x, filepath.Join(x, "matomo"), filepath.Join(x, "piwik")} {
		if _, err := os.Stat(filepath.Join(cand, "console")); err == nil {
			return os.Rename(cand, dst)
		}
	}
	return fmt.Errorf("%s: no matomo/console inside: is this a Matomo release?", release)
}

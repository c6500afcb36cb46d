package matomo

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // site time zones must resolve on hosts without /usr/share/zoneinfo
)

// locCache: 10,000 sites share a few dozen zones; loading each from the
// embedded database again costs a parse per site and scan.
var locCache sync.Map

// LoadLocation resolves a site time zone as Matomo stores it in site.timezone:
// an IANA name ("Europe/Berlin") or a manual offset "UTC", "UTC+5.5", "UTC-3"
// (float hours, as core/Date.php extractUtcOffset reads them).
func LoadLocation(name string) (*time.Location, error) {
	if name == "" {
		return nil, fmt.Errorf("site time zone is empty: set one in Matomo (Websites > Manage)")
	}
	if name == "UTC" {
		return time.UTC, nil
	}
	if rest, ok := strings.CutPrefix(name, "UTC"); ok && (strings.HasPrefix(rest, "+") || strings.HasPrefix(rest, "-")) {
		hours, err := strconv.ParseFloat(rest, 64)
		if err != nil || math.IsNaN(hours) || math.Abs(hours) > 14 {
			return nil, fmt.Errorf("site time zone %q is not a valid UTC offset (expected e.g. UTC+5.5 or UTC-3)", name)
		}
		secs := int(math.Round(hours * 3600))
		return time.FixedZone(name, secs), nil
	}
	if l, ok := locCache.Load(name); ok {
		return l.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err == nil {
		locCache.Store(name, loc)
	}
	if err != nil {
		return nil, fmt.Errorf("site time zone %q is unknown: use an IANA name such as Europe/Berlin or an offset such as UTC+5.5", name)
	}
	return loc, nil
}

// DayBounds returns the UTC instants [start, end) of the site-local day d in
// loc. On DST days the span is 23 or 25 hours; Matomo's own window is the
// inclusive 00:00:00..23:59:59, which is the same set of whole seconds.
func DayBounds(loc *time.Location, d Date) (start, end time.Time) {
	y, m, dd := d.Time().Date()
	start = localMidnight(loc, y, m, dd)
	return start.UTC(), DayEnd(loc, d)
}

// DayEnd is the end of DayBounds alone: the first instant after the
// site-local day d (a scan asks it for every period of every site).
func DayEnd(loc *time.Location, d Date) time.Time {
	y, m, dd := d.AddDays(1).Time().Date()
	return localMidnight(loc, y, m, dd).UTC()
}

// localMidnight is the first instant of the local day. Where a DST jump
// skips 00:00 (e.g. America/Santiago), the day starts at the first local time
// that exists, which is what time.Date gives after normalisation only when
// the gap is after midnight; we correct for a gap that swallows midnight.
func localMidnight(loc *time.Location, y int, m time.Month, d int) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if ty, tm, td := t.Date(); ty != y || tm != m || td != d {
		// Midnight did not exist and time.Date moved us to the previous day:
		// walk forward to the first instant of the wanted date.
		for i := 0; i < 4*60 && DateOf(t) != NewDate(y, m, d); i++ {
			t = t.Add(time.Minute)
		}
	}
	return t
}

// Today returns the site-local calendar date at instant now.
func Today(loc *time.Location, now time.Time) Date { return DateOf(now.In(loc)) }

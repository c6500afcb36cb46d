package matomo

import (
	"strings"
	"testing"
	"time"
)

func TestDayBounds(t *testing.T) {
	cases := []struct {
		tz, day, start, end string
		hours               float64
	}{
		{"UTC", "2026-11-27", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z", 24},
		// New York: DST ends 2026-11-01 (25 h), starts 2026-03-08 (23 h).
		{"America/New_York", "2026-11-01", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", 25},
		{"America/New_York", "2026-03-08", "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", 23},
		{"America/New_York", "2026-10-31", "2026-10-31T04:00:00Z", "2026-11-01T04:00:00Z", 24},
		// Berlin: 2026-03-29 (23 h), 2026-10-25 (25 h).
		{"Europe/Berlin", "2026-03-29", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z", 23},
		{"Europe/Berlin", "2026-10-25", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z", 25},
		{"Asia/Kolkata", "2026-11-17", "2026-11-16T18:30:00Z", "2026-11-17T18:30:00Z", 24},
		// Lord Howe: 30-minute DST, ends 2026-04-05 (24.5 h), starts 2026-10-04 (23.5 h).
		{"Australia/Lord_Howe", "2026-04-05", "2026-04-04T13:00:00Z", "2026-04-05T13:30:00Z", 24.5},
		{"Australia/Lord_Howe", "2026-10-04", "2026-10-03T13:30:00Z", "2026-10-04T13:00:00Z", 23.5},
		// Chatham +12:45/+13:45: DST ends 2026-04-05.
		{"Pacific/Chatham", "2026-04-05", "2026-04-04T10:15:00Z", "2026-04-05T11:15:00Z", 25},
		{"UTC+5.5", "2026-11-17", "2026-11-16T18:30:00Z", "2026-11-17T18:30:00Z", 24},
		{"UTC-3", "2026-11-17", "2026-11-17T03:00:00Z", "2026-11-18T03:00:00Z", 24},
		{"UTC+5.75", "2026-11-17", "2026-11-16T18:15:00Z", "2026-11-17T18:15:00Z", 24},
		{"UTC+14", "2026-01-01", "2025-12-31T10:00:00Z", "2026-01-01T10:00:00Z", 24},
	}
	for _, c := range cases {
		loc, err := LoadLocation(c.tz)
		if err != nil {
			t.Fatalf("%s: %v", c.tz, err)
		}
		d, _ := ParseDate(c.day)
		s, e := DayBounds(loc, d)
		if got := s.Format(time.RFC3339); got != c.start {
			t.Errorf("%s %s start = %s, want %s", c.tz, c.day, got, c.start)
		}
		if got := e.Format(time.RFC3339); got != c.end {
			t.Errorf("%s %s end = %s, want %s", c.tz, c.day, got, c.end)
		}
		if h := e.Sub(s).Hours(); h != c.hours {
			t.Errorf("%s %s spans %v h, want %v", c.tz, c.day, h, c.hours)
		}
	}
}

// A zone whose DST jump swallows midnight: the day starts at 01:00.
func TestDayBoundsMidnightGap(t *testing.T) {
	loc, err := LoadLocation("America/Santiago") // DST starts 2026-09-06 at 00:00 -> 01:00
	if err != nil {
		t.Fatal(err)
	}
	d, _ := ParseDate("2026-09-06")
	s, e := DayBounds(loc, d)
	if DateOf(s.In(loc)) != d {
		t.Fatalf("start %v is not on %v locally", s.In(loc), d)
	}
	if h := e.Sub(s).Hours(); h != 23 {
		t.Fatalf("span %v h, want 23", h)
	}
}

func TestLoadLocationErrors(t *testing.T) {
	for _, tz := range []string{"Mars/Olympus", "UTC+abc", "UTC+99", ""} {
		_, err := LoadLocation(tz)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: want one-line error, got %v", tz, err)
		}
	}
	if _, err := LoadLocation("Mars/Olympus"); !strings.Contains(err.Error(), "IANA name") {
		t.Errorf("error does not say the fix: %v", err)
	}
}

func TestDate(t *testing.T) {
	d, err := ParseDate("2024-02-28")
	if err != nil {
		t.Fatal(err)
	}
	if d.AddDays(1).String() != "2024-02-29" || d.AddDays(2).String() != "2024-03-01" || d.Month().String() != "2024-02-01" {
		t.Fatal("date arithmetic wrong")
	}
	if _, err := ParseDate("2024-13-01"); err == nil {
		t.Fatal("bad month accepted")
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{{"5.0.2", "5.1.0", true}, {"5.1.0-b1", "5.1.0", true}, {"5.1.0", "5.1.0", false}, {"5.10.0", "5.9.9", false}, {"4.16.1", "5.0.0", true}} {
		if got := VersionLess(c.a, c.b); got != c.less {
			t.Errorf("VersionLess(%s,%s)=%v", c.a, c.b, got)
		}
	}
}

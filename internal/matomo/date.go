package matomo

import (
	"fmt"
	"time"
)

// Date is a calendar day (no time zone), stored as days since 1970-01-01.
// Matomo's archive tables key everything by site-local calendar dates, and a
// small integer keeps per-site-day state cheap for 10,000 sites × 365 days.
type Date int32

const dateLayout = "2006-01-02"

// DateOf returns the calendar date of t in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return NewDate(y, m, d)
}

// NewDate builds a Date; out-of-range days are normalised as time.Date does.
func NewDate(y int, m time.Month, d int) Date {
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// ParseDate parses YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return 0, fmt.Errorf("date %q is not a valid YYYY-MM-DD date", s)
	}
	return DateOf(t), nil
}

// Time is midnight UTC of the date: a calendar value, not an instant.
func (d Date) Time() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

// AddDays returns the date n days later (earlier for negative n).
func (d Date) AddDays(n int) Date { return d + Date(n) }

func (d Date) String() string { return d.Time().Format(dateLayout) }

// Month returns the first day of d's month.
func (d Date) Month() Date {
	y, m, _ := d.Time().Date()
	return NewDate(y, m, 1)
}

// MarshalText makes Date print as YYYY-MM-DD in JSON and logs.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses YYYY-MM-DD.
func (d *Date) UnmarshalText(b []byte) error {
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

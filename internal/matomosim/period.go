package main

import (
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// period is a Matomo day/week/month/year in a site's local calendar.
type period struct {
	typ        int // matomo.PeriodDay … PeriodYear
	start, end matomo.Date
}

var periodLabels = map[int]string{
	matomo.PeriodDay: "day", matomo.PeriodWeek: "week", matomo.PeriodMonth: "month",
	matomo.PeriodYear: "year", matomo.PeriodRange: "range",
}

func periodOf(typ int, d matomo.Date) period {
	y, m, _ := d.Time().Date()
	switch typ {
	case matomo.PeriodWeek: // Matomo weeks start on Monday
		off := (int(d.Time().Weekday()) + 6) % 7
		s := d.AddDays(-off)
		return period{typ, s, s.AddDays(6)}
	case matomo.PeriodMonth:
		return period{typ, matomo.NewDate(y, m, 1), matomo.NewDate(y, m+1, 1).AddDays(-1)}
	case matomo.PeriodYear:
		return period{typ, matomo.NewDate(y, 1, 1), matomo.NewDate(y, 12, 31)}
	}
	return period{matomo.PeriodDay, d, d}
}

func (p period) label() string { return periodLabels[p.typ] }

func (p period) contains(d matomo.Date) bool { return p.start <= d && d <= p.end }

func (p period) intersects(q period) bool { return p.start <= q.end && q.start <= p.end }

// subperiods are what Matomo builds a period from: a week from its days, a
// month from the weeks lying wholly inside it plus the leftover days, a year
// from its months.
func (p period) subperiods() []period {
	var out []period
	switch p.typ {
	case matomo.PeriodWeek:
		for d := p.start; d <= p.end; d++ {
			out = append(out, periodOf(matomo.PeriodDay, d))
		}
	case matomo.PeriodMonth:
		for d := p.start; d <= p.end; {
			if w := periodOf(matomo.PeriodWeek, d); w.start == d && w.end <= p.end {
				out = append(out, w)
				d = w.end + 1
				continue
			}
			out = append(out, periodOf(matomo.PeriodDay, d))
			d++
		}
	case matomo.PeriodYear:
		for d := p.start; d <= p.end; {
			mo := periodOf(matomo.PeriodMonth, d)
			out = append(out, mo)
			d = mo.end + 1
		}
	}
	return out
}

// parents are the periods an invalidation always takes along: a day's week,
// month and year; a week's month(s) and year(s); a month's year.
func (p period) parents() []period {
	var out []period
	add := func(q period) {
		for _, o := range out {
			if o == q {
				return
			}
		}
		out = append(out, q)
	}
	switch p.typ {
	case matomo.PeriodDay:
		add(periodOf(matomo.PeriodWeek, p.start))
		add(periodOf(matomo.PeriodMonth, p.start))
		add(periodOf(matomo.PeriodYear, p.start))
	case matomo.PeriodWeek:
		add(periodOf(matomo.PeriodMonth, p.start))
		add(periodOf(matomo.PeriodMonth, p.end))
		add(periodOf(matomo.PeriodYear, p.start))
		add(periodOf(matomo.PeriodYear, p.end))
	case matomo.PeriodMonth:
		add(periodOf(matomo.PeriodYear, p.start))
	}
	return out
}

// cascade lists the child periods --cascade adds: a week's days; a month's
// overlapping weeks and its days; a year's months, overlapping weeks and days
// (as observed in g4: the week 2026-12-28..2027-01-03 is included, its 2027
// days are not).
func (p period) cascade() []period {
	var out []period
	if p.typ == matomo.PeriodYear {
		for d := p.start; d <= p.end; {
			mo := periodOf(matomo.PeriodMonth, d)
			out = append(out, mo)
			d = mo.end + 1
		}
	}
	if p.typ == matomo.PeriodMonth || p.typ == matomo.PeriodYear {
		for w := periodOf(matomo.PeriodWeek, p.start); w.start <= p.end; w = periodOf(matomo.PeriodWeek, w.end+1) {
			out = append(out, w)
		}
	}
	if p.typ != matomo.PeriodDay {
		for d := p.start; d <= p.end; d++ {
			out = append(out, periodOf(matomo.PeriodDay, d))
		}
	}
	return out
}

// bounds is the UTC window [from, to) of the period's local days.
func (p period) bounds(loc *time.Location) (time.Time, time.Time) {
	from, _ := matomo.DayBounds(loc, p.start)
	_, to := matomo.DayBounds(loc, p.end)
	return from, to
}

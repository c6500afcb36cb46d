package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the plain-text result, laid out to paste into the README.
type report struct {
	cmd    string
	header []string
	data   []string
	rows   []row
	checks []string
	notes  []string
	footer []string
	agree  bool // every gap comparison agreed
}

// row is one figure of the table.
type row struct{ figure, kind, median, spread, load, trips, disk, heap, target, verdict string }

func (r *report) add(x row) { r.rows = append(r.rows, x) }

func (r *report) print(w io.Writer) {
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		if title != "" {
			fmt.Fprintln(w, title)
		}
		for _, l := range lines {
			fmt.Fprintln(w, "  "+l)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, l := range r.header {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
	section("data:", r.data)
	if len(r.rows) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "figure\tkind\tmedian\tmin – max (runs)\tload\tround trips\tdisk reads\tpeak heap\ttarget\tverdict")
		for _, x := range r.rows {
			load := x.load
			if load == "" {
				load = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.figure, x.kind, x.median, x.spread, load, x.trips, x.disk, x.heap, x.target, x.verdict)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	section("checks:", r.checks)
	section("where the time goes:", r.notes)
	section("", r.footer)
}

// dur prints a duration with three significant digits.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f s", d.Seconds())
}

// spread prints the range of a summary's runs.
func spread(s summary) string {
	if s.runs < 2 {
		return fmt.Sprintf("(%d run)", s.runs)
	}
	return fmt.Sprintf("%s – %s (%d)", dur(s.min), dur(s.max), s.runs)
}

// pages prints InnoDB pages read from disk per run.
func pages(n int64) string {
	if n < 0 {
		return "?"
	}
	return thousands(n)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// heapOf prints a summary's peak heap and peak live heap.
func heapOf(s summary) string {
	return fmt.Sprintf("%s (live %s)", mib(s.heap), strings.TrimSuffix(mib(s.live), " MiB"))
}

func mib(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// verdictMax judges a figure that must stay at or under target.
func verdictMax(v, target float64) string {
	if v <= target {
		return "ok"
	}
	if v/target < 1.5 {
		return fmt.Sprintf("MISSED (×%.2f the target)", v/target)
	}
	return fmt.Sprintf("MISSED (×%.1f the target)", v/target)
}

// verdictMin judges a figure that must reach at least target.
func verdictMin(v, target float64) string {
	if v >= target {
		return "ok"
	}
	return fmt.Sprintf("MISSED (%.0f %% of the target)", 100*v/target)
}

// thousands prints 1234567 as 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

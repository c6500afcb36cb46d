package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// pick is one site-day chosen for invalidation.
type pick struct {
	s *site
	i int
}

// pickGood chooses each good day archive of the window with probability
// share.
func (ds *dataset) pickGood(rng *rand.Rand, window int, share float64) []pick {
	var out []pick
	for _, s := range ds.sites {
		for i, st := range s.state {
			if st == stGood && s.base[i] > 0 && s.date(i) >= s.today.AddDays(-window) && rng.Float64() < share {
				out = append(out, pick{s, i})
			}
		}
	}
	return out
}

// pickDay chooses every site's good archive of the day back days before
// its today: what one core:archive run writes for yesterday (back = 1).
func (ds *dataset) pickDay(back int) []pick {
	var out []pick
	for _, s := range ds.sites {
		for i, st := range s.state {
			if st == stGood && s.base[i] > 0 && s.date(i) == s.today.AddDays(-back) {
				out = append(out, pick{s, i})
			}
		}
	}
	return out
}

// setDone sets the done value of the picked days' archives (plain and
// segments) in place, as core:invalidate-report-data does (value 4).
func (ds *dataset) setDone(ctx context.Context, picks []pick, value int) error {
	byTable := map[string][]int32{}
	for _, p := range picks {
		t := p.s.date(p.i).Time().Format("2006_01")
		byTable[t] = append(byTable[t], p.s.base[p.i])
	}
	names := "'done'"
	if ds.segments {
		names += ", '" + strings.Join(segmentDone, "', '") + "'"
	}
	for t, bases := range byTable {
		for off := 0; off < len(bases); off += 1000 {
			var ids []string
			for _, b := range bases[off:min(off+1000, len(bases))] {
				ids = append(ids, fmt.Sprint(b))
				if ds.segments {
					ids = append(ids, fmt.Sprint(b+1), fmt.Sprint(b+2))
				}
			}
			q := fmt.Sprintf("UPDATE %s SET value = %d WHERE idarchive IN (%s) AND name IN (%s)",
				ds.table("archive_numeric_"+t), value, strings.Join(ids, ","), names)
			if err := ds.exec(ctx, q); err != nil {
				return err
			}
		}
	}
	return nil
}

// invalidate marks the picked days invalidated and queues them now; mark
// is the queue's last id before, for restore.
func (ds *dataset) invalidate(ctx context.Context, picks []pick) (mark int64, err error) {
	if err := ds.env.DB.QueryRowContext(ctx, "SELECT COALESCE(MAX(idinvalidation), 0) FROM "+ds.table("archive_invalidations")).Scan(&mark); err != nil {
		return 0, err
	}
	if err := ds.setDone(ctx, picks, matomo.DoneInvalidated); err != nil {
		return 0, err
	}
	rows := make([]archRow, len(picks))
	for k, p := range picks {
		d := p.s.date(p.i)
		rows[k] = archRow{base: p.s.base[p.i], idsite: p.s.id, date1: d, date2: d}
	}
	return mark, ds.queue(ctx, rows, time.Now())
}

// restore undoes invalidate as a finished core:archive run does (observed
// in fixtures/tables/g_archive_numeric_after_rearchive.tsv): each day gets
// new archives (new idarchive, ts_archived now, done = 1) and the old rows
// are deleted; the queue rows are gone.
func (ds *dataset) restore(ctx context.Context, picks []pick, mark int64) error {
	byTable := map[string][]pick{}
	for _, p := range picks {
		t := p.s.date(p.i).Time().Format("2006_01")
		byTable[t] = append(byTable[t], p)
	}
	per := int32(1)
	if ds.segments {
		per = 3
	}
	for t, ps := range byTable {
		tbl := ds.table("archive_numeric_" + t)
		var top int64
		if err := ds.env.DB.QueryRowContext(ctx, "SELECT COALESCE(MAX(idarchive), 0) FROM "+tbl).Scan(&top); err != nil {
			return err
		}
		next := int32(top) + 1
		for off := 0; off < len(ps); off += 300 {
			batch := ps[off:min(off+300, len(ps))]
			var ids, cases []string
			for _, p := range batch {
				old := p.s.base[p.i]
				for j := int32(0); j < per; j++ {
					ids = append(ids, fmt.Sprint(old+j))
					cases = append(cases, fmt.Sprintf("WHEN %d THEN %d", old+j, next+j))
				}
				p.s.base[p.i] = next
				next += per
			}
			in := strings.Join(ids, ",")
			if err := ds.exec(ctx, fmt.Sprintf(`INSERT INTO %s (idarchive, name, idsite, date1, date2, period, ts_archived, value)
SELECT CASE idarchive %s END, name, idsite, date1, date2, period, UTC_TIMESTAMP(), IF(name LIKE 'done%%', %d, value)
FROM %s WHERE idarchive IN (%s)`, tbl, strings.Join(cases, " "), matomo.DoneOK, tbl, in)); err != nil {
				return err
			}
			if err := ds.exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE idarchive IN (%s)", tbl, in)); err != nil {
				return err
			}
		}
		if err := ds.exec(ctx, fmt.Sprintf("UPDATE %s SET value = %d WHERE name = '%sarchive_numeric_%s'", ds.table("sequence"), next-1, ds.env.Prefix, t)); err != nil {
			return err
		}
	}
	return ds.exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE idinvalidation > %d", ds.table("archive_invalidations"), mark))
}

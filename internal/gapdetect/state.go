package gapdetect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// stateVersion changes whenever savedState or the meaning of a field
// changes: an older file is then ignored, and the next scan is full.
const stateVersion = 2 // 2: day archive times and period flags

// savedState is the file form of state.
type savedState struct {
	Version    int                  `json:"version"`
	Identity   string               `json:"identity"` // matomo.DB.Identity at the last full scan
	SavedAt    time.Time            `json:"saved_at"`
	FullAt     time.Time            `json:"full_at"`
	Queued     []savedQueued        `json:"queued"`
	Tables     []matomo.TableSig    `json:"tables"`
	Visits     matomo.VisitBounds   `json:"visits"`
	Reports    []string             `json:"reports"`
	FirstVisit map[string]time.Time `json:"first_visit"`
	FirstRead  []int                `json:"first_read"`
	Sites      []savedSite          `json:"sites"`
	Memos      []savedMemo          `json:"period_memos"`
}

type savedMemo struct {
	Key       matomo.PeriodKey `json:"k"`
	Raw       int64            `json:"raw"`
	RawKnown  bool             `json:"known"`
	ArchID    int64            `json:"arch_id"`
	ArchKnown bool             `json:"arch_known"`
	Archived  *int64           `json:"arch,omitempty"`
	SumFP     uint64           `json:"fp"`
	SumStale  bool             `json:"stale,omitempty"`
}

type savedQueued struct {
	Site int         `json:"s"`
	Date matomo.Date `json:"d"`
	At   time.Time   `json:"t"`
}

type savedSite struct {
	ID    int         `json:"id"`
	Since matomo.Date `json:"since"`
	Until matomo.Date `json:"until"`
	Days  []byte      `json:"days"` // day states, one byte per day
	Open  []savedDay  `json:"open"`
	// DayTS is each day's newest ts_archived (Unix seconds, 0: none).
	DayTS   []uint32      `json:"ts"`
	Periods []savedPeriod `json:"periods"`
}

type savedPeriod struct {
	Newest   matomo.DoneFlag `json:"n"`
	NewestOK matomo.DoneFlag `json:"ok"`
}

type savedDay struct {
	Date     matomo.Date     `json:"d"`
	Newest   matomo.DoneFlag `json:"n"`
	NewestOK matomo.DoneFlag `json:"ok"`
	Raw      int64           `json:"raw"`
	RawKnown bool            `json:"known"`
	Archived *int64          `json:"arch,omitempty"`
	Stale    bool            `json:"stale,omitempty"`
}

// SaveState writes what the detector knows (after at least one scan) to
// path, so that a restarted daemon's first scan costs what a steady
// rescan costs. The file is written to a temporary file beside path and
// renamed over it: a crash leaves the old file or the new one. Nothing
// is written before the first scan.
func (d *Detector) SaveState(path string) error {
	d.mu.Lock()
	st := d.state
	var s savedState
	if st != nil {
		s = st.saved()
	}
	d.mu.Unlock()
	if st == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("scan state %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("scan state %s: %w: make its directory writable", path, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("scan state %s: %w", path, err)
	}
	return nil
}

// LoadState reads a file written by SaveState. The next scan checks it
// against the database (server, schema, prefix, log_visit's creation
// time, idvisit range, table signatures): a restore or another database
// makes that scan full. A missing file is not an error; an unreadable or
// older-version file is, and leaves the detector as it was (full scan).
func (d *Detector) LoadState(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("scan state %s: %w", path, err)
	}
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("scan state %s: %v: delete it, the next scan is a full one", path, err)
	}
	if s.Version != stateVersion {
		return fmt.Errorf("scan state %s: version %d, this matomod writes %d: ignored, the next scan is a full one", path, s.Version, stateVersion)
	}
	st, err := s.state()
	if err != nil {
		return fmt.Errorf("scan state %s: %v: delete it, the next scan is a full one", path, err)
	}
	d.mu.Lock()
	d.state = st
	d.mu.Unlock()
	return nil
}

func (st *state) saved() savedState {
	s := savedState{Version: stateVersion, Identity: st.identity, SavedAt: time.Now().UTC(), FullAt: st.fullAt,
		Visits: st.visits, FirstVisit: map[string]time.Time{}}
	for k, t := range st.queued {
		s.Queued = append(s.Queued, savedQueued{k.IDSite, k.Date, t})
	}
	for _, t := range st.tables {
		s.Tables = append(s.Tables, t)
	}
	for n := range st.reports {
		s.Reports = append(s.Reports, n)
	}
	for id, t := range st.firstVisit {
		s.FirstVisit[fmt.Sprint(id)] = t
	}
	for id, ok := range st.firstRead {
		if ok {
			s.FirstRead = append(s.FirstRead, id)
		}
	}
	for k, m := range st.periodMemo {
		s.Memos = append(s.Memos, savedMemo{Key: k, Raw: m.raw, RawKnown: m.rawKnown, ArchID: m.archID, ArchKnown: m.archKnown,
			Archived: m.archived, SumFP: m.sumFP, SumStale: m.sumStale})
	}
	for id, ss := range st.sites {
		// A copy: the file is encoded after the lock is released, while
		// the next scan may already change the live slice.
		sv := savedSite{ID: id, Since: ss.since, Until: ss.until, Days: slices.Clone(ss.days), DayTS: slices.Clone(ss.dayTS)}
		for _, e := range ss.periods {
			p, _ := ss.periodPair(int(e.period), e.date)
			sv.Periods = append(sv.Periods, savedPeriod{Newest: p.newest, NewestOK: p.ok})
		}
		for d, info := range ss.open {
			sv.Open = append(sv.Open, savedDay{Date: d, Newest: info.newest, NewestOK: info.newestOK, Raw: info.raw,
				RawKnown: info.rawKnown, Archived: info.archived, Stale: info.stale})
		}
		s.Sites = append(s.Sites, sv)
	}
	return s
}

func (s savedState) state() (*state, error) {
	if s.Identity == "" {
		return nil, errors.New("no database identity")
	}
	st := newState(s.FullAt)
	st.identity, st.checkIdentity, st.visits = s.Identity, true, s.Visits
	st.queued = map[matomo.SiteDate]time.Time{}
	for _, q := range s.Queued {
		st.queued[matomo.SiteDate{IDSite: q.Site, Date: q.Date}] = q.At
	}
	for _, t := range s.Tables {
		st.tables[t.Name] = t
	}
	for _, n := range s.Reports {
		st.reports[n] = true
	}
	for k, t := range s.FirstVisit {
		var id int
		if _, err := fmt.Sscan(k, &id); err != nil {
			return nil, fmt.Errorf("first visit of site %q", k)
		}
		st.firstVisit[id] = t
	}
	for _, id := range s.FirstRead {
		st.firstRead[id] = true
	}
	for _, m := range s.Memos {
		st.periodMemo[m.Key] = &periodMemo{raw: m.Raw, rawKnown: m.RawKnown, archID: m.ArchID, archKnown: m.ArchKnown,
			archived: m.Archived, sumFP: m.SumFP, sumStale: m.SumStale}
	}
	for _, sv := range s.Sites {
		if int(sv.Until-sv.Since)+1 != len(sv.Days) {
			return nil, fmt.Errorf("site %d: %d day states for %s..%s", sv.ID, len(sv.Days), sv.Since, sv.Until)
		}
		if len(sv.DayTS) != len(sv.Days) {
			return nil, fmt.Errorf("site %d: %d archive times for %d days", sv.ID, len(sv.DayTS), len(sv.Days))
		}
		ss := &siteState{since: sv.Since, until: sv.Until, days: sv.Days, dayTS: sv.DayTS, open: map[matomo.Date]*dayInfo{}}
		for _, p := range sv.Periods {
			ss.mergePeriod(p.Newest)
			if p.NewestOK.IDArchive != 0 && p.NewestOK != p.Newest {
				ss.mergePeriod(p.NewestOK)
			}
		}
		for i, v := range ss.days {
			if v > dsOpen {
				return nil, fmt.Errorf("site %d: day state %d", sv.ID, v)
			}
			if v == dsOpen {
				ss.days[i] = dsUnknown // re-read unless its facts were saved
			}
		}
		for _, o := range sv.Open {
			if o.Date < sv.Since || o.Date > sv.Until {
				continue
			}
			ss.days[o.Date-sv.Since] = dsOpen
			ss.open[o.Date] = &dayInfo{newest: o.Newest, newestOK: o.NewestOK, raw: o.Raw, rawKnown: o.RawKnown, archived: o.Archived, stale: o.Stale}
		}
		st.sites[sv.ID] = ss
	}
	return st, nil
}

// checkIdentity: a loaded state is only used if it describes this
// database; otherwise the scan is full.
func (d *Detector) loadedStateValid(ctx context.Context) (bool, error) {
	id, err := d.db.Identity(ctx)
	if err != nil {
		return false, err
	}
	return id == d.state.identity, nil
}

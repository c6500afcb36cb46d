package metrics

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// EncodedGaps holds the gap families (matomo_archive_gaps and friends)
// encoded once, in the text exposition format, when a scan ends. With
// 10,000 sites with gaps they are ~31 k series: gathering and encoding
// them on every scrape took 62 ms; serving the prepared bytes does not
// depend on their number.
type EncodedGaps struct {
	buf atomic.Pointer[encoded]
}

// encoded is one snapshot as text, and as one gzip member: a gzip stream
// may hold several members one after another (RFC 1952), so a scrape
// gzips only the small registry part and appends this one.
type encoded struct{ plain, gz []byte }

// gapFamilies are the families EncodedGaps serves; Handler drops them from
// the registry's own output so that they appear once.
var gapFamilies = map[string]bool{
	"matomo_archive_gaps":                         true,
	"matomo_archive_gaps_all_sites":               true,
	"matomo_archive_gap_oldest_timestamp_seconds": true,
	"matomo_collection_gaps":                      true,
	"matomod_gap_scan_sites_skipped":              true,
	"matomo_archive_period_gaps":                  true,
	"matomo_archive_period_gaps_all_sites":        true,
	"matomo_archive_segment_gaps":                 true,
	"matomo_archive_segment_gaps_all_sites":       true,
}

// NewEncodedGaps returns an EncodedGaps holding an empty snapshot (the
// fixed-label families at 0).
func NewEncodedGaps() *EncodedGaps {
	e := &EncodedGaps{}
	if err := e.Set(GapSnapshot{}); err != nil {
		panic(err) // an empty snapshot always encodes
	}
	return e
}

type constCollector []prometheus.Metric

func (c constCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }
func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- m
	}
}

// Set encodes s; scrapes serve it from then on. It costs what one scrape
// of the same snapshot used to cost, once per scan.
func (e *EncodedGaps) Set(s GapSnapshot) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(constCollector(gapMetrics(s))); err != nil {
		return fmt.Errorf("encoding gap metrics: %w", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("encoding gap metrics: %w", err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("encoding gap metrics: %w", err)
		}
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b.Bytes())
	if err := zw.Close(); err != nil {
		return fmt.Errorf("encoding gap metrics: %w", err)
	}
	e.buf.Store(&encoded{plain: b.Bytes(), gz: z.Bytes()})
	return nil
}

// Handler serves g's metrics, encoded per scrape, without the gap
// families, followed by the prepared gap families, in the text format.
// Wire it in place of promhttp.HandlerFor(reg, …) and call Set instead of
// Metrics.SetGaps when a scan ends (the registry then only holds the
// gap families' empty defaults, which are dropped here).
func (e *EncodedGaps) Handler(g prometheus.Gatherer) http.Handler {
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mfs, err := g.Gather()
		if err != nil {
			http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		var b bytes.Buffer
		te := expfmt.NewEncoder(&b, format)
		for _, mf := range mfs {
			if gapFamilies[mf.GetName()] {
				continue
			}
			if err := te.Encode(mf); err != nil {
				http.Error(w, "encoding metrics: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		enc := e.buf.Load()
		w.Header().Set("Content-Type", string(format))
		if !acceptsGzip(r) {
			w.Write(b.Bytes())
			w.Write(enc.plain)
			return
		}
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b.Bytes())
		if err := zw.Close(); err != nil {
			http.Error(w, "encoding metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(z.Bytes())
		w.Write(enc.gz)
	})
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(name) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

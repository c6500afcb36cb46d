package metrics

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parse(t testing.TB, body []byte) map[string]string {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	out := map[string]string{}
	for name, mf := range mfs {
		var b strings.Builder
		expfmt.MetricFamilyToText(&b, mf)
		out[name] = b.String()
	}
	return out
}

func get(t testing.TB, h http.Handler) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

// The encoded scrape serves exactly what the registry would: same
// families, same series, each once.
func TestEncodedGapsSameAsRegistry(t *testing.T) {
	s := sites(500, 3)
	s.SitesSkipped = 2
	m, reg := newTest(t)
	m.SetGaps(s)
	want := parse(t, get(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))

	_, reg2 := newTest(t)
	enc := NewEncodedGaps()
	if err := enc.Set(s); err != nil {
		t.Fatal(err)
	}
	got := parse(t, get(t, enc.Handler(reg2)))
	// gzip: the small registry part and the prepared gap part are two
	// gzip members of one stream; a client reads them as one body.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	enc.Handler(reg2).ServeHTTP(rec, req)
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if gz := parse(t, body); gz["matomo_archive_gaps"] != got["matomo_archive_gaps"] || len(gz) != len(got) {
		t.Errorf("gzipped scrape differs from the plain one: %d families vs %d", len(gz), len(got))
	}
	for name, w := range want {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue // runtime values differ between two gathers
		}
		if got[name] != w {
			t.Errorf("%s:\ngot  %.300s\nwant %.300s", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d families, want %d", len(got), len(want))
	}
}

// BenchmarkEncodedScrape10kSitesAllWithGaps: the worst case of
// BenchmarkScrape10kSitesAllWithGaps, served from the encoded snapshot.
func BenchmarkEncodedScrape10kSitesAllWithGaps(b *testing.B) {
	_, reg := newTest(b)
	enc := NewEncodedGaps()
	if err := enc.Set(sites(10_000, 1)); err != nil {
		b.Fatal(err)
	}
	h := enc.Handler(reg)
	size := 0
	for b.Loop() {
		size = scrapeOnce(b, h)
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// BenchmarkEncodedScrapeGzip10kSitesAllWithGaps: the same, asked with
// Accept-Encoding: gzip as Prometheus asks.
func BenchmarkEncodedScrapeGzip10kSitesAllWithGaps(b *testing.B) {
	_, reg := newTest(b)
	enc := NewEncodedGaps()
	if err := enc.Set(sites(10_000, 1)); err != nil {
		b.Fatal(err)
	}
	h := enc.Handler(reg)
	size := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		h.ServeHTTP(rec, req)
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// BenchmarkEncodedGapsSet10kSites is the price paid once per scan.
func BenchmarkEncodedGapsSet10kSites(b *testing.B) {
	enc := NewEncodedGaps()
	s := sites(10_000, 1)
	for b.Loop() {
		if err := enc.Set(s); err != nil {
			b.Fatal(err)
		}
	}
}

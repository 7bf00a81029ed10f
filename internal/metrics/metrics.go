// Package metrics owns agentplane's private Prometheus registry (SPEC §10):
// Go and process collectors, subsystem liveness read at scrape time, and the
// counters other packages register through it.
//
// It never uses the global default registry, so tests and several servers in
// one process do not collide.
package metrics

import (
	"net/http"

	"github.com/agentplane/agentplane/internal/supervise"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the server's registry and its shared instruments.
type Metrics struct {
	Registry *prometheus.Registry
	// HTTPRequests counts requests by route pattern, method and status code.
	HTTPRequests *prometheus.CounterVec
	// HTTPDuration observes request latency by route pattern and method.
	HTTPDuration *prometheus.HistogramVec
	// StoreErrors counts failed store calls by operation.
	StoreErrors *prometheus.CounterVec

	// SchedulerLateness is the time from a slot to its first dispatch.
	SchedulerLateness prometheus.Histogram
	// SchedulerRuns counts finished runs and accounted-for slots by status.
	SchedulerRuns *prometheus.CounterVec
	// SchedulerSkips counts skipped slots by reason.
	SchedulerSkips *prometheus.CounterVec
	// SchedulerMissed counts missed slots (a range counts each slot).
	SchedulerMissed prometheus.Counter
	// SchedulerBacklog is how many schedules were due and not yet claimed
	// at the end of the last claim pass.
	SchedulerBacklog prometheus.Gauge
}

// New builds the registry. live is read on every scrape, so beat age is
// always current.
func New(live *supervise.Registry) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentplane_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentplane_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"route", "method"}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentplane_store_errors_total", Help: "Failed store operations by operation.",
		}, []string{"op"}),
		SchedulerLateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentplane_scheduler_lateness_seconds", Help: "Time from a schedule's slot to the run's first dispatch.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		SchedulerRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentplane_scheduler_runs_total", Help: "Finished runs and accounted-for slots by status.",
		}, []string{"status"}),
		SchedulerSkips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentplane_scheduler_skips_total", Help: "Skipped slots by reason.",
		}, []string{"reason"}),
		SchedulerMissed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentplane_scheduler_missed_slots_total", Help: "Slots that passed without a run (each slot of a missed range).",
		}),
		SchedulerBacklog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentplane_scheduler_due_backlog", Help: "Schedules due but not yet claimed after the last claim pass.",
		}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.HTTPRequests, m.HTTPDuration, m.StoreErrors,
		m.SchedulerLateness, m.SchedulerRuns, m.SchedulerSkips, m.SchedulerMissed, m.SchedulerBacklog,
		&livenessCollector{live: live},
	)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

var (
	beatAgeDesc = prometheus.NewDesc("agentplane_subsystem_beat_age_seconds",
		"Seconds since the subsystem last beat (or started, before its first beat).", []string{"subsystem"}, nil)
	staleDesc = prometheus.NewDesc("agentplane_subsystem_stale",
		"1 when the subsystem missed three beat intervals.", []string{"subsystem"}, nil)
	restartsDesc = prometheus.NewDesc("agentplane_subsystem_restarts_total",
		"Restarts of the subsystem after a panic or an error.", []string{"subsystem"}, nil)
	panicsDesc = prometheus.NewDesc("agentplane_subsystem_panics_total",
		"Recovered panics of the subsystem.", []string{"subsystem"}, nil)
)

type livenessCollector struct{ live *supervise.Registry }

func (c *livenessCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- beatAgeDesc
	ch <- staleDesc
	ch <- restartsDesc
	ch <- panicsDesc
}

func (c *livenessCollector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range c.live.Snapshot() {
		stale := 0.0
		if st.Stale {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(beatAgeDesc, prometheus.GaugeValue, st.SecondsAgo, name)
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, stale, name)
		ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(st.Restarts), name)
		ch <- prometheus.MustNewConstMetric(panicsDesc, prometheus.CounterValue, float64(st.Panics), name)
	}
}

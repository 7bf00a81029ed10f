package cron

import "time"

// This file maps the calendar matches of calendar.go to real instants with
// the DST rules of SPEC §6.2. It never asks time.Date to resolve a wall time:
// it walks the zone's offset spans and decides gaps and folds itself.
//
// A span is an interval of instants [start, end) with one UTC offset, as
// time.Location.ZoneBounds reports it (two adjacent spans may share an
// offset; that boundary is then neither a gap nor a fold).
// Inside a span the wall clock is instant+offset, a bijection, so "the first
// matching instant of the span at or after lo" is one calendar search. The
// DST rules only matter within maxOffset·2 of a span's start:
//
//   - fold, fixed-time, dst_fold=once: a wall time that an earlier span
//     already showed is not a first occurrence and does not fire again;
//   - gap, fixed-time, dst_gap=shift: a matching wall time that no span shows
//     fires at wall − (offset just before the transition), i.e. in
//     [start, start+gap) of the span after the gap.

const (
	// maxOffset bounds |UTC offset| of any zone; TestZoneData checks it
	// against every zone of the embedded tzdata (the largest is 15h56m8s,
	// Asia/Manila's LMT before 1845).
	maxOffset = 26 * 3600

	minInstant = -62135596800 // 0001-01-01T00:00:00Z
	maxInstant = 253402300799 // 9999-12-31T23:59:59Z

	// Span bounds are clamped to this window so that instant±offset never
	// overflows.
	spanLo = minInstant - 4*secondsPerDay
	spanHi = maxInstant + 4*secondsPerDay

	// maxSpanSteps bounds the span walk of one Next call. A DST zone has
	// about 2 spans a year, so even a search to year 9999 stays below it.
	maxSpanSteps = 40000
	// maxNeighbours bounds the spans examined on each side of a transition.
	maxNeighbours = 8
)

type span struct {
	start, end int64 // instants [start, end)
	off        int64 // UTC offset in seconds
}

// spanAt returns the span containing instant t.
func (s *Schedule) spanAt(t int64) span {
	if s.static {
		return span{spanLo, spanHi, s.staticOff}
	}
	tt := time.Unix(t, 0).In(s.loc)
	_, off := tt.Zone()
	a, b := tt.ZoneBounds()
	sp := span{spanLo, spanHi, int64(off)}
	if !a.IsZero() {
		sp.start = max(a.Unix(), spanLo)
	}
	if !b.IsZero() {
		sp.end = min(b.Unix(), spanHi)
	}
	// ZoneBounds is exact inside a zone's transition table, but beyond it,
	// where the zone's POSIX TZ rule applies, Go computes the bounds from the
	// rule alone, within the UTC year:
	//   - the start can be earlier than the table's last transition (it
	//     ignores the table): clamp it to that transition;
	//   - the start or end can be a year boundary instead of a transition:
	//     harmless, the neighbouring span has the same offset;
	//   - on 31 December (UTC) of a leap year, after the year's last
	//     transition, the end is ≤ t: use the next UTC midnight instead, the
	//     rule has no transition left before it.
	if t >= s.lastTx && sp.start < s.lastTx {
		sp.start = s.lastTx
	}
	sp.start = min(sp.start, t)
	if sp.end <= t {
		sp.end = min(floorDiv(t, secondsPerDay)*secondsPerDay+secondsPerDay, spanHi)
	}
	if sp.end <= t {
		sp.end = t + 1
	}
	return sp
}

// interval is a half-open range of wall values [lo, hi).
type interval struct{ lo, hi int64 }

// pieces is a small, allocation-free set of disjoint ascending intervals.
type pieces struct {
	n int
	v [3*maxNeighbours + 2]interval // one more than the most cuts ever made
}

func (p *pieces) set(iv interval) {
	p.n = 0
	if iv.lo < iv.hi {
		p.v[0], p.n = iv, 1
	}
}

// cut removes c from every piece.
func (p *pieces) cut(c interval) {
	if c.lo >= c.hi {
		return
	}
	var out pieces
	for _, iv := range p.v[:p.n] {
		if c.hi <= iv.lo || c.lo >= iv.hi {
			out.add(iv)
			continue
		}
		out.add(interval{iv.lo, c.lo})
		out.add(interval{c.hi, iv.hi})
	}
	*p = out
}

func (p *pieces) add(iv interval) {
	if iv.lo < iv.hi && p.n < len(p.v) {
		p.v[p.n] = iv
		p.n++
	}
}

// neighbourhood holds the spans around the start of a span: back[0] is the
// span just before it, back[1] the one before that, and so on; fwd[0] is the
// span just after it.
type neighbourhood struct {
	nBack, nFwd int
	back        [maxNeighbours]span
	fwd         [maxNeighbours]span
}

// neighbours fills nb with the spans around the start of sp.
func (s *Schedule) neighbours(nb *neighbourhood, sp span) {
	*nb = neighbourhood{}
	horizon := sp.start - 2*maxOffset
	for t := sp.start; nb.nBack < maxNeighbours && t > spanLo; {
		p := s.spanAt(t - 1)
		nb.back[nb.nBack] = p
		nb.nBack++
		if p.start <= horizon {
			break
		}
		t = p.start
	}
	horizon = sp.start + 2*maxOffset
	for t := sp.end; nb.nFwd < maxNeighbours && t < horizon && t < spanHi; {
		n := s.spanAt(t)
		nb.fwd[nb.nFwd] = n
		nb.nFwd++
		t = n.end
	}
}

// wallMemo caches one calendar search: no wall value in [from, wall)
// matches, and wall matches (or, if none, nothing ≥ from matches).
type wallMemo struct {
	valid bool
	none  bool
	from  int64
	wall  int64
}

// firstWall returns the first matching wall value in [lo, hi).
func (s *Schedule) firstWall(m *wallMemo, lo, hi int64) (int64, bool) {
	if lo >= hi {
		return 0, false
	}
	if !(m.valid && m.from <= lo && (m.none || lo <= m.wall)) {
		w, ok := s.nextWall(lo)
		*m = wallMemo{valid: true, none: !ok, from: lo, wall: w}
	}
	if m.none || m.wall >= hi {
		return 0, false
	}
	return m.wall, true
}

// firstIn returns the first matching wall value in the pieces that is ≥ min.
func (s *Schedule) firstIn(m *wallMemo, p *pieces, min int64) (int64, bool) {
	for _, iv := range p.v[:p.n] {
		if w, ok := s.firstWall(m, max(iv.lo, min), iv.hi); ok {
			return w, true
		}
	}
	return 0, false
}

// firstRegular returns the first instant ≥ lo in span sp whose wall time
// matches, leaving out repeated wall times when the fold policy says once.
func (s *Schedule) firstRegular(m *wallMemo, sp span, lo int64, nb *neighbourhood) (int64, bool) {
	lo = max(lo, sp.start)
	if lo >= sp.end {
		return 0, false
	}
	var p pieces
	p.set(interval{lo + sp.off, sp.end + sp.off})
	if nb != nil && s.fold == DSTFoldOnce {
		for _, e := range nb.back[:nb.nBack] {
			p.cut(interval{e.start + e.off, e.end + e.off})
		}
	}
	w, ok := s.firstIn(m, &p, lo+sp.off)
	if !ok {
		return 0, false
	}
	return w - sp.off, true
}

// firstShifted returns the first instant ≥ lo at which a wall time skipped by
// the gap at the start of sp fires under dst_gap=shift.
func (s *Schedule) firstShifted(m *wallMemo, sp span, lo int64, nb *neighbourhood) (int64, bool) {
	if nb.nBack == 0 {
		return 0, false
	}
	prev := nb.back[0].off
	if prev >= sp.off {
		return 0, false
	}
	var p pieces
	p.set(interval{sp.start + prev, sp.start + sp.off})
	// A wall time that some other span shows is not skipped at all.
	for _, e := range nb.back[:nb.nBack] {
		p.cut(interval{e.start + e.off, e.end + e.off})
	}
	for _, e := range nb.fwd[:nb.nFwd] {
		p.cut(interval{e.start + e.off, e.end + e.off})
	}
	// A wall time skipped twice fires once, after the first gap.
	for i := 0; i+1 < nb.nBack; i++ {
		a, b := nb.back[i+1], nb.back[i]
		if a.off < b.off {
			p.cut(interval{b.start + a.off, b.start + b.off})
		}
	}
	w, ok := s.firstIn(m, &p, lo+prev)
	if !ok {
		return 0, false
	}
	return w - prev, true
}

// nextCalendar returns the first fire instant ≥ lo of a calendar schedule.
func (s *Schedule) nextCalendar(lo int64) (int64, bool) {
	var m wallMemo
	best, found := int64(0), false
	cur := s.spanAt(lo)
	if s.fixed && s.gap == DSTGapShift && !s.static {
		// A short span's shifted fires can spill into later spans: start from
		// the earliest span whose gap can reach lo.
		for i := 0; i < maxNeighbours && cur.start > lo-2*maxOffset && cur.start > spanLo; i++ {
			cur = s.spanAt(cur.start - 1)
		}
	}
	var nbBuf neighbourhood
	for step := 0; step < maxSpanSteps; step++ {
		if lo > maxInstant || (found && lo >= best) {
			break
		}
		var nb *neighbourhood
		if s.fixed && !s.static && cur.start > spanLo && lo < cur.start+2*maxOffset {
			nb = &nbBuf
			s.neighbours(nb, cur)
		}
		if t, ok := s.firstRegular(&m, cur, lo, nb); ok && (!found || t < best) {
			best, found = t, true
		}
		if nb != nil && s.gap == DSTGapShift {
			if t, ok := s.firstShifted(&m, cur, lo, nb); ok && t >= lo && (!found || t < best) {
				best, found = t, true
			}
		}
		if (found && best < cur.end) || cur.end >= spanHi {
			break
		}
		next := cur.end
		// Jump over spans that cannot contain a fire: every instant in
		// [cur.end, m.wall-maxOffset) has a wall time in [m.from, m.wall),
		// where nothing matches (shifted fires need a matching wall too).
		if m.valid && m.from <= cur.end-maxOffset {
			if m.none {
				break
			}
			next = max(next, m.wall-maxOffset)
		}
		lo = max(lo, next)
		cur = s.spanAt(next)
	}
	if !found || best > maxInstant {
		return 0, false
	}
	return best, true
}

package cron

import "math/bits"

// This file is the zone-free half of the search: "wall" values are seconds
// since 1970-01-01 00:00:00 on a local clock that never changes offset, and
// nextWall finds the first wall value matching the expression's calendar
// fields by walking month → day → hour → minute → second over bitsets.
// Mapping wall values to real instants is zone.go's job.

const (
	secondsPerDay = 86400
	// daysTo1970 is the number of days from 0000-03-01 to 1970-01-01 in the
	// proleptic Gregorian calendar.
	daysTo1970 = 719468
	daysPer400 = 146097
	// wallYearLimit bounds every calendar search: no expression accepted by
	// Parse needs more than 8 years to its next match, and no instant after
	// year 9999 is ever returned.
	wallYearLimit = 10001
)

// floorDiv returns ⌊a/b⌋ for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date.
// It counts in 400-year eras that start on 1 March, so that the leap day is
// the last day of its era-year.
func civil(days int64) (year int64, month, day int) {
	days += daysTo1970
	era := floorDiv(days, daysPer400)
	doe := days - era*daysPer400                           // day of era, 0..146096
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // year of era, 0..399
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // day of year from 1 March, 0..365
	mp := (5*doy + 2) / 153                                // month from March, 0..11
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp + 3)
	if month > 12 {
		month -= 12
	}
	year = yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

// daysFromCivil is the inverse of civil.
func daysFromCivil(year int64, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := floorDiv(year, 400)
	yoe := year - era*400
	mp := int64((month + 9) % 12)
	doy := (153*mp+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*daysPer400 + doe - daysTo1970
}

func isLeap(year int64) bool {
	return year%4 == 0 && (year%100 != 0 || year%400 == 0)
}

var monthDays = [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func daysIn(year int64, month int) int {
	if month == 2 && isLeap(year) {
		return 29
	}
	return monthDays[month]
}

// weekday returns 0 (Sunday) … 6 (Saturday) for days since 1970-01-01, a
// Thursday.
func weekday(days int64) int {
	w := (days + 4) % 7
	if w < 0 {
		w += 7
	}
	return int(w)
}

// firstAtOrAbove returns the lowest set bit of mask at position ≥ from, or -1.
func firstAtOrAbove(mask uint64, from int) int {
	if from >= 64 {
		return -1
	}
	m := mask >> uint(from) << uint(from)
	if m == 0 {
		return -1
	}
	return bits.TrailingZeros64(m)
}

// dayMask returns the days (bits 1..31) of the given month that match the
// day-of-month and day-of-week fields, using the classic OR rule when both
// are restricted.
func (s *Schedule) dayMask(year int64, month int) uint32 {
	n := daysIn(year, month)
	valid := uint32(1)<<uint(n+1) - 2
	var m uint32
	switch {
	case s.domStar && s.dowStar:
		m = valid
	case s.dowStar:
		m = s.dom
	default:
		w := weekday(daysFromCivil(year, month, 1))
		m = s.dowDays[w]
		if !s.domStar {
			m |= s.dom
		}
	}
	return m & valid
}

// timeOfDay returns the first matching second of the day at or after sod, or
// -1 if none is left in the day.
func (s *Schedule) timeOfDay(sod int64) int64 {
	h, mi, se := int(sod/3600), int(sod/60%60), int(sod%60)
	if s.hour>>uint(h)&1 == 1 {
		if s.min>>uint(mi)&1 == 1 {
			if ns := firstAtOrAbove(s.sec, se); ns >= 0 {
				return int64(h*3600 + mi*60 + ns)
			}
		}
		if nm := firstAtOrAbove(s.min, mi+1); nm >= 0 {
			return int64(h*3600 + nm*60 + bits.TrailingZeros64(s.sec))
		}
	}
	nh := firstAtOrAbove(uint64(s.hour), h+1)
	if nh < 0 {
		return -1
	}
	return int64(nh*3600 + bits.TrailingZeros64(s.min)*60 + bits.TrailingZeros64(s.sec))
}

// nextWall returns the first wall value ≥ from that matches the calendar
// fields, or ok=false if there is none before wallYearLimit. Its cost is
// bounded by the number of months it walks, which Parse keeps small by
// refusing expressions that never match.
func (s *Schedule) nextWall(from int64) (wall int64, ok bool) {
	days := floorDiv(from, secondsPerDay)
	sod := from - days*secondsPerDay
	year, month, day := civil(days)
	for year < wallYearLimit {
		if s.month>>uint(month)&1 == 0 {
			nm := firstAtOrAbove(uint64(s.month), month+1)
			if nm < 0 {
				year++
				nm = bits.TrailingZeros16(s.month)
			}
			month, day, sod = nm, 1, 0
			continue
		}
		mask := s.dayMask(year, month) >> uint(day) << uint(day)
		if mask == 0 {
			month++
			if month > 12 {
				month, year = 1, year+1
			}
			day, sod = 1, 0
			continue
		}
		if d := bits.TrailingZeros32(mask); d != day {
			day, sod = d, 0
		}
		t := s.timeOfDay(sod)
		if t < 0 {
			day, sod = day+1, 0
			continue
		}
		return daysFromCivil(year, month, day)*secondsPerDay + t, true
	}
	return 0, false
}

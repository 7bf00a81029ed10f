package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// fieldSpec describes one of the six cron fields.
type fieldSpec struct {
	name   string
	lo, hi int      // accepted values (day-of-week accepts 7 for Sunday)
	starHi int      // upper end of * and of a/step (6 for day-of-week)
	names  []string // names for values lo.. (month, day-of-week), upper case
}

var (
	secondSpec = fieldSpec{name: FieldSecond, lo: 0, hi: 59, starHi: 59}
	minuteSpec = fieldSpec{name: FieldMinute, lo: 0, hi: 59, starHi: 59}
	hourSpec   = fieldSpec{name: FieldHour, lo: 0, hi: 23, starHi: 23}
	domSpec    = fieldSpec{name: FieldDayOfMonth, lo: 1, hi: 31, starHi: 31}
	monthSpec  = fieldSpec{name: FieldMonth, lo: 1, hi: 12, starHi: 12,
		names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}}
	dowSpec = fieldSpec{name: FieldDayOfWeek, lo: 0, hi: 7, starHi: 6,
		names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}}
)

// token is a whitespace-separated word of the expression and its offset.
type token struct {
	text string
	pos  int
}

// parsedField is the result of parsing one field.
type parsedField struct {
	bits  uint64
	star  bool   // the field is * (or */1): it restricts nothing
	fixed bool   // every item is a single value
	norm  string // normalized text
}

func splitTokens(s string) []token {
	var out []token
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		start := i
		for i < len(s) && !isSpace(s[i]) {
			i++
		}
		if i > start {
			out = append(out, token{s[start:i], start})
		}
	}
	return out
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

var descriptors = map[string]struct{ canon, fields string }{
	"@yearly":   {"@yearly", "0 0 1 1 *"},
	"@annually": {"@yearly", "0 0 1 1 *"},
	"@monthly":  {"@monthly", "0 0 1 * *"},
	"@weekly":   {"@weekly", "0 0 * * 0"},
	"@daily":    {"@daily", "0 0 * * *"},
	"@midnight": {"@daily", "0 0 * * *"},
	"@hourly":   {"@hourly", "0 * * * *"},
}

// Parse parses and validates expr (SPEC §6.2) and binds it to the zone and
// DST policies of opts. It accepts 5 fields (minute hour day-of-month month
// day-of-week) or 6 with a leading seconds field, the descriptors @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly, and
// "@every <duration>" (a Go duration of whole seconds, at least 1s), each
// optionally preceded by CRON_TZ=<zone> or TZ=<zone>.
//
// Every problem with the input is reported as a *ParseError; an expression
// that can never fire also wraps ErrNeverFires. A missing Options.Anchor for
// @every gives ErrBadAnchor. Parse never panics, and its cost is linear in
// the length of expr, which is capped at MaxExprLen bytes.
func Parse(expr string, opts Options) (*Schedule, error) {
	s := &Schedule{}
	switch opts.DSTGap {
	case "", DSTGapShift:
		s.gap = DSTGapShift
	case DSTGapSkip:
		s.gap = DSTGapSkip
	default:
		return nil, &ParseError{Param: ParamDSTGap, Field: FieldDSTGap, Token: string(opts.DSTGap), Pos: -1,
			Reason: `must be "shift" or "skip"`}
	}
	switch opts.DSTFold {
	case "", DSTFoldOnce:
		s.fold = DSTFoldOnce
	case DSTFoldBoth:
		s.fold = DSTFoldBoth
	default:
		return nil, &ParseError{Param: ParamDSTFold, Field: FieldDSTFold, Token: string(opts.DSTFold), Pos: -1,
			Reason: `must be "once" or "both"`}
	}
	if len(expr) > MaxExprLen {
		return nil, &ParseError{Param: ParamCronExpr, Field: FieldExpression, Token: expr, Pos: 0,
			Reason: fmt.Sprintf("longer than %d bytes", MaxExprLen)}
	}
	toks := splitTokens(expr)
	if len(toks) == 0 {
		return nil, &ParseError{Param: ParamCronExpr, Field: FieldExpression, Pos: 0, Reason: "empty expression"}
	}

	if err := s.parseZone(&toks, opts.Timezone); err != nil {
		return nil, err
	}

	if strings.HasPrefix(toks[0].text, "@") {
		if err := s.parseDescriptor(toks, opts.Anchor); err != nil {
			return nil, err
		}
	} else if err := s.parseFields(toks, expr); err != nil {
		return nil, err
	}
	s.static, s.staticOff = isStatic(s.loc)
	s.lastTx = lastTransitionOf(s.loc)
	return s, nil
}

// parseZone strips a CRON_TZ=/TZ= prefix from toks and resolves the zone.
func (s *Schedule) parseZone(toks *[]token, optZone string) error {
	name, pos, prefix := "", -1, ""
	first := (*toks)[0]
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if strings.HasPrefix(first.text, p) {
			prefix, name, pos = p, first.text[len(p):], first.pos+len(p)
			break
		}
	}
	if prefix != "" {
		if name == "" {
			return &ParseError{Param: ParamCronExpr, Field: FieldTimezone, Token: first.text, Pos: first.pos,
				Reason: "empty time zone in " + prefix + " prefix"}
		}
		*toks = (*toks)[1:]
		if len(*toks) == 0 {
			return &ParseError{Param: ParamCronExpr, Field: FieldExpression, Token: first.text, Pos: first.pos,
				Reason: "no schedule after the " + prefix + " prefix"}
		}
		if optZone != "" && optZone != name {
			return &ParseError{Param: ParamTimezone, Field: FieldTimezone, Token: optZone, Pos: -1,
				Reason: fmt.Sprintf("differs from the zone %s in the cron_expr %s prefix", quoteToken(name), prefix)}
		}
		loc, err := loadLocation(name, ParamCronExpr, pos)
		if err != nil {
			return err
		}
		s.zone, s.loc = name, loc
		return nil
	}
	loc, err := loadLocation(optZone, ParamTimezone, -1)
	if err != nil {
		return err
	}
	s.zone, s.loc = optZone, loc
	if optZone == "" {
		s.zone = "UTC"
	}
	return nil
}

// isStatic reports whether loc has one UTC offset for all time, and which.
func isStatic(loc *time.Location) (bool, int64) {
	t := time.Unix(0, 0).In(loc)
	start, end := t.ZoneBounds()
	_, off := t.Zone()
	return start.IsZero() && end.IsZero(), int64(off)
}

func (s *Schedule) parseDescriptor(toks []token, anchor time.Time) error {
	word := strings.ToLower(toks[0].text)
	if word == "@every" {
		if len(toks) != 2 {
			return &ParseError{Param: ParamCronExpr, Field: FieldEvery, Token: toks[0].text, Pos: toks[0].pos,
				Reason: "want exactly one duration, e.g. @every 90s"}
		}
		d, err := parseEvery(toks[1])
		if err != nil {
			return err
		}
		if anchor.IsZero() || anchor.Unix() < minInstant || anchor.Unix() > maxInstant {
			return ErrBadAnchor
		}
		s.every = int64(d / time.Second)
		s.anchor = anchor.Unix()
		s.expr = "@every " + d.String()
		return nil
	}
	desc, ok := descriptors[word]
	if !ok {
		return &ParseError{Param: ParamCronExpr, Field: FieldDescriptor, Token: toks[0].text, Pos: toks[0].pos,
			Reason: "unknown descriptor (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)"}
	}
	if len(toks) != 1 {
		return &ParseError{Param: ParamCronExpr, Field: FieldDescriptor, Token: toks[1].text, Pos: toks[1].pos,
			Reason: "unexpected text after " + desc.canon}
	}
	if err := s.parseFields(splitTokens(desc.fields), desc.fields); err != nil {
		return err // unreachable: the descriptor table is valid
	}
	s.expr = desc.canon
	return nil
}

func parseEvery(tok token) (time.Duration, error) {
	bad := func(reason string) error {
		return &ParseError{Param: ParamCronExpr, Field: FieldEvery, Token: tok.text, Pos: tok.pos, Reason: reason}
	}
	d, err := time.ParseDuration(tok.text)
	switch {
	case err != nil:
		return 0, bad("invalid duration (want e.g. 90s, 15m or 1h30m)")
	case d < time.Second:
		return 0, bad("duration must be at least 1s")
	case d%time.Second != 0:
		return 0, bad("duration must be a whole number of seconds")
	}
	return d, nil
}

// parseFields parses 5 or 6 cron fields.
func (s *Schedule) parseFields(toks []token, expr string) error {
	if len(toks) != 5 && len(toks) != 6 {
		last := toks[len(toks)-1]
		return &ParseError{Param: ParamCronExpr, Field: FieldExpression, Token: expr[toks[0].pos : last.pos+len(last.text)], Pos: toks[0].pos,
			Reason: fmt.Sprintf("want 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second field, got %d", len(toks))}
	}
	specs := []*fieldSpec{&minuteSpec, &hourSpec, &domSpec, &monthSpec, &dowSpec}
	sec := parsedField{bits: 1, fixed: true}
	hasSeconds := len(toks) == 6
	if hasSeconds {
		var err error
		if sec, err = parseField(toks[0], &secondSpec); err != nil {
			return err
		}
		toks = toks[1:]
	}
	var f [5]parsedField
	for i, spec := range specs {
		var err error
		if f[i], err = parseField(toks[i], spec); err != nil {
			return err
		}
	}
	s.sec, s.min, s.hour = sec.bits, f[0].bits, uint32(f[1].bits)
	s.dom, s.domStar = uint32(f[2].bits), f[2].star
	s.month = uint16(f[3].bits)
	dow := f[4].bits
	if dow&(1<<7) != 0 { // 7 is Sunday
		dow = dow&^(1<<7) | 1
	}
	s.dow, s.dowStar = uint8(dow), f[4].star
	for w := range 7 {
		var m uint32
		for d := 1; d <= 31; d++ {
			if dow>>uint((w+d-1)%7)&1 == 1 {
				m |= 1 << uint(d)
			}
		}
		s.dowDays[w] = m
	}
	s.fixed = sec.fixed && f[0].fixed && f[1].fixed

	norm := []string{f[0].norm, f[1].norm, f[2].norm, f[3].norm, f[4].norm}
	if hasSeconds {
		norm = append([]string{sec.norm}, norm...)
	}
	s.expr = strings.Join(norm, " ")
	return s.checkFires(s.expr)
}

// checkFires refuses expressions whose day fields can never match. With the
// OR rule, a restricted day-of-week always matches some day of every month;
// only a day-of-month restricted alone can miss every listed month.
func (s *Schedule) checkFires(norm string) error {
	if s.domStar || !s.dowStar {
		return nil
	}
	for m := 1; m <= 12; m++ {
		max := monthDays[m]
		if m == 2 {
			max = 29
		}
		if s.month>>uint(m)&1 == 1 && s.dom&(uint32(1)<<uint(max+1)-2) != 0 {
			return nil
		}
	}
	return &ParseError{Param: ParamCronExpr, Field: FieldExpression, Token: norm, Pos: -1,
		Reason: "never fires: no listed month has any of the listed days of the month", Err: ErrNeverFires}
}

// parseField parses a comma-separated list of items:
// *, */step, value, lo-hi, lo-hi/step and value/step (value to the end of
// the field's range).
func parseField(tok token, spec *fieldSpec) (parsedField, error) {
	out := parsedField{fixed: true}
	var norm []string
	pos := tok.pos
	items := strings.Split(tok.text, ",")
	for _, item := range items {
		itemPos := pos
		pos += len(item) + 1
		bad := func(reason string) (parsedField, error) {
			return parsedField{}, &ParseError{Param: ParamCronExpr, Field: spec.name, Token: item, Pos: itemPos, Reason: reason}
		}
		if item == "" {
			if len(items) == 1 {
				return bad("empty field")
			}
			return bad("empty list item")
		}
		base, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			size := spec.starHi - spec.lo + 1
			n, ok := parseNumber(stepText)
			switch {
			case stepText == "":
				return bad("missing step after /")
			case !allDigits(stepText):
				return bad(fmt.Sprintf("step %s is not a number", quotePart(stepText)))
			case !ok || n < 1 || n > size:
				return bad(fmt.Sprintf("step %s out of range 1-%d", trimDigits(stepText), size))
			}
			step = n
		}
		var lo, hi int
		isStar := base == "*"
		switch {
		case isStar:
			lo, hi = spec.lo, spec.starHi
		case base == "":
			return bad("missing value before /")
		default:
			loText, hiText, isRange := strings.Cut(base, "-")
			var err string
			switch {
			case isRange && loText == "":
				return bad("missing range start (negative values are not allowed)")
			case isRange && hiText == "":
				return bad("missing range end")
			}
			if lo, err = parseValue(loText, spec); err != "" {
				return bad(err)
			}
			hi = lo
			switch {
			case isRange:
				if hi, err = parseValue(hiText, spec); err != "" {
					return bad(err)
				}
				if lo > hi {
					return bad(fmt.Sprintf("range start %d is after range end %d", lo, hi))
				}
			case hasStep:
				hi = max(lo, spec.starHi) // 7/2 in day-of-week is just 7
			}
		}
		count := 0
		for v := lo; v <= hi; v += step {
			out.bits |= 1 << uint(v)
			count++
		}
		single := !isStar && count == 1
		out.fixed = out.fixed && single
		if isStar && step == 1 && len(items) == 1 {
			out.star = true
		}
		norm = append(norm, normItem(isStar, single, lo, hi, step))
	}
	out.norm = strings.Join(norm, ",")
	return out, nil
}

// normItem renders one item canonically. An item that denotes one value is
// rendered as that value, so that String round-trips through Parse with the
// same fixed-time classification.
func normItem(isStar, single bool, lo, hi, step int) string {
	var b string
	switch {
	case single:
		return strconv.Itoa(lo)
	case isStar:
		b = "*"
	default:
		b = strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
	}
	if step != 1 {
		b += "/" + strconv.Itoa(step)
	}
	return b
}

// parseValue parses a number or, for month and day-of-week, a three-letter
// name. It returns a non-empty reason when the value is invalid.
func parseValue(text string, spec *fieldSpec) (int, string) {
	if text == "" {
		return 0, "missing value"
	}
	if allDigits(text) {
		n, ok := parseNumber(text)
		if !ok || n < spec.lo || n > spec.hi {
			return 0, fmt.Sprintf("value %s out of range %d-%d", trimDigits(text), spec.lo, spec.hi)
		}
		return n, ""
	}
	if len(spec.names) > 0 && len(text) == 3 {
		up := strings.ToUpper(text)
		for i, name := range spec.names {
			if up == name {
				return spec.lo + i, ""
			}
		}
	}
	if len(spec.names) > 0 {
		return 0, fmt.Sprintf("invalid value %s (want %d-%d or a name such as %s)", quotePart(text), spec.lo, spec.hi, spec.names[1])
	}
	return 0, fmt.Sprintf("invalid value %s (want %d-%d)", quotePart(text), spec.lo, spec.hi)
}

// parseNumber parses a run of ASCII digits whose value is below 10000.
func parseNumber(s string) (int, bool) {
	if !allDigits(s) {
		return 0, false
	}
	s = strings.TrimLeft(s, "0")
	if len(s) > 4 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// trimDigits shows a run of digits without leading zeros, shortened for an
// error message.
func trimDigits(s string) string {
	s = strings.TrimLeft(s[:len(s)-1], "0") + s[len(s)-1:]
	if len(s) > maxPartInError {
		s = s[:maxPartInError] + "…"
	}
	return s
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

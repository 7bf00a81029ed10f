package cron

import (
	"errors"
	"strconv"
	"strings"
)

// ErrNeverFires is wrapped by the *ParseError returned for an expression
// that has no fire time at all, such as "0 0 31 2 *" (there is no 31 February).
var ErrNeverFires = errors.New("cron: expression never fires")

// ErrBadAnchor is returned by Parse for an @every expression when
// Options.Anchor is zero or outside the years 1 to 9999. It reports a mistake
// of the calling code, not of the user's input, so it is not a *ParseError.
var ErrBadAnchor = errors.New("cron: @every needs Options.Anchor, the schedule's creation instant (years 1-9999)")

// Field names used in ParseError.Field.
const (
	FieldSecond     = "second"
	FieldMinute     = "minute"
	FieldHour       = "hour"
	FieldDayOfMonth = "day-of-month"
	FieldMonth      = "month"
	FieldDayOfWeek  = "day-of-week"
	FieldTimezone   = "timezone"
	FieldEvery      = "@every"
	FieldDescriptor = "descriptor"
	FieldExpression = "expression"
	FieldDSTGap     = "dst_gap"
	FieldDSTFold    = "dst_fold"
)

// Request parameters named by ParseError.Param.
const (
	ParamCronExpr = "cron_expr"
	ParamTimezone = "timezone"
	ParamDSTGap   = "dst_gap"
	ParamDSTFold  = "dst_fold"
)

// maxTokenInError and maxPartInError bound how much of an offending token
// (and of a part of it quoted again in the reason) an error message quotes,
// so that hostile input cannot make error messages large: at most 4 bytes
// of output per input byte (\xNN), so well under 400 bytes in all.
const (
	maxTokenInError = 40
	maxPartInError  = 16
)

// ParseError describes why an expression or one of its options was refused.
// Its Error method names the request parameter, the part of the expression
// and the offending text, e.g.
//
//	cron_expr: minute field "61": value 61 out of range 0-59
type ParseError struct {
	// Param is the request parameter at fault: "cron_expr", "timezone",
	// "dst_gap" or "dst_fold".
	Param string
	// Field is the part at fault: one of the Field… constants, e.g. "minute"
	// or "timezone".
	Field string
	// Token is the offending text (an item of a field, a zone name, a
	// duration …); it may be empty.
	Token string
	// Pos is the byte offset of Token in the expression passed to Parse, or -1
	// when the problem is not located in the expression.
	Pos int
	// Reason says what is wrong, e.g. "value 61 out of range 0-59".
	Reason string
	// Err is a wrapped sentinel such as ErrNeverFires, or nil.
	Err error
}

// Error formats the error as "<param>: <field> "<token>": <reason>".
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.Param)
	switch {
	case e.Param != ParamCronExpr:
		// The parameter is the field (timezone, dst_gap, dst_fold).
		b.WriteString(" ")
	case e.Token == "" && e.Field == FieldExpression:
		b.WriteString(": ")
		b.WriteString(e.Reason)
		return b.String()
	default:
		b.WriteString(": ")
		b.WriteString(e.Field)
		if isCronField(e.Field) {
			b.WriteString(" field")
		}
		b.WriteString(" ")
	}
	b.WriteString(quoteToken(e.Token))
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns the wrapped sentinel, if any.
func (e *ParseError) Unwrap() error { return e.Err }

func isCronField(f string) bool {
	switch f {
	case FieldSecond, FieldMinute, FieldHour, FieldDayOfMonth, FieldMonth, FieldDayOfWeek:
		return true
	}
	return false
}

func quoteToken(s string) string { return quoteMax(s, maxTokenInError) }

// quotePart quotes part of a token inside a reason.
func quotePart(s string) string { return quoteMax(s, maxPartInError) }

func quoteMax(s string, n int) string {
	if len(s) > n {
		return strconv.Quote(s[:n]) + "…"
	}
	return strconv.Quote(s)
}

package resp

import (
	"strconv"
)

// The Append functions encode one reply onto dst and return the extended
// slice, allocating only when dst must grow. resp3 selects the RESP3 form
// where the two versions differ (nulls, maps, doubles, booleans).

// AppendSimple appends a simple string: +OK.
func AppendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	dst = appendLine(dst, s)
	return append(dst, '\r', '\n')
}

// AppendError appends an error reply; msg starts with its code (ERR,
// WRONGTYPE, NOAUTH, ...). CR and LF in msg become spaces.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	dst = appendLine(dst, msg)
	return append(dst, '\r', '\n')
}

func appendLine(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendInt appends an integer reply.
func AppendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// AppendBulk appends a bulk string.
func AppendBulk(dst []byte, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends a bulk string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendNull appends a null: $-1 in RESP2, _ in RESP3.
func AppendNull(dst []byte, resp3 bool) []byte {
	if resp3 {
		return append(dst, '_', '\r', '\n')
	}
	return append(dst, '$', '-', '1', '\r', '\n')
}

// AppendNullArray appends a null array: *-1 in RESP2, _ in RESP3.
func AppendNullArray(dst []byte, resp3 bool) []byte {
	if resp3 {
		return append(dst, '_', '\r', '\n')
	}
	return append(dst, '*', '-', '1', '\r', '\n')
}

// AppendArray appends the header of an array of n elements.
func AppendArray(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendSet appends the header of a set of n elements (an array in RESP2).
func AppendSet(dst []byte, n int, resp3 bool) []byte {
	if !resp3 {
		return AppendArray(dst, n)
	}
	dst = append(dst, '~')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendMap appends the header of a map of n pairs (an array of 2n
// elements in RESP2).
func AppendMap(dst []byte, n int, resp3 bool) []byte {
	if !resp3 {
		return AppendArray(dst, 2*n)
	}
	dst = append(dst, '%')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendDouble appends a double: a RESP3 double, or in RESP2 the bulk
// string of its digits.
func AppendDouble(dst []byte, text []byte, resp3 bool) []byte {
	if !resp3 {
		return AppendBulk(dst, text)
	}
	dst = append(dst, ',')
	dst = append(dst, text...)
	return append(dst, '\r', '\n')
}

// AppendVerbatim appends text as a RESP3 verbatim string of format "txt"
// (a bulk string in RESP2).
func AppendVerbatim(dst []byte, text string, resp3 bool) []byte {
	if !resp3 {
		return AppendBulkString(dst, text)
	}
	dst = append(dst, '=')
	dst = strconv.AppendInt(dst, int64(len(text)+4), 10)
	dst = append(dst, "\r\ntxt:"...)
	dst = append(dst, text...)
	return append(dst, '\r', '\n')
}

package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize reads a byte size: plain bytes ("1048576") or a number with a
// unit. Units are binary, as in Redis's configuration: 1KB = 1KiB = 1024,
// 1MB = 1MiB, 1GB = 1GiB, so -max-memory=1GB reports 1073741824 bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	if num == "" {
		return 0, fmt.Errorf("size %q does not start with a number", s)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
		"M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
		"G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
		"T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q has an unknown unit %q (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)", s, t[i:])
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: %w", s, err)
		}
		if n > (1<<62)/int64(mult) {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return n * int64(mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	v := f * mult
	if v > 1<<62 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// sizeFlag is a flag.Value holding a byte size.
type sizeFlag struct {
	bytes int64
	text  string
}

func (f *sizeFlag) String() string { return f.text }

func (f *sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	f.bytes, f.text = n, s
	return nil
}

// historyFlag is -watch-history: "REVISIONS,SIZE" (either may be left out:
// "1000000", ",256MiB"), the watch history window's two bounds.
type historyFlag struct {
	revisions, bytes int64
	text             string
}

func (f *historyFlag) String() string { return f.text }

func (f *historyFlag) Set(s string) error {
	revs, size, _ := strings.Cut(s, ",")
	var r, b int64
	if revs = strings.TrimSpace(revs); revs != "" {
		n, err := strconv.ParseInt(revs, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("watch history %q: the revisions must be a positive number", s)
		}
		r = n
	}
	if size = strings.TrimSpace(size); size != "" {
		n, err := parseSize(size)
		if err != nil {
			return fmt.Errorf("watch history %q: %w", s, err)
		}
		if n < 1<<10 {
			return fmt.Errorf("watch history %q: the size must be at least 1KiB", s)
		}
		b = n
	}
	if r == 0 && b == 0 {
		return fmt.Errorf("watch history %q: give REVISIONS, ,SIZE or REVISIONS,SIZE", s)
	}
	if r != 0 {
		f.revisions = r
	}
	if b != 0 {
		f.bytes = b
	}
	f.text = s
	return nil
}

package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const segmentExt = ".wal"

type segment struct {
	seq   uint64
	first uint64 // first raft index expected in the segment
	// maxIndex is the highest entry index ever written to the segment,
	// including entries later overwritten: ReleaseTo may only delete a
	// segment none of whose bytes matter above the release index.
	maxIndex uint64
}

func (s segment) name() string { return fmt.Sprintf("%016x-%016x%s", s.seq, s.first, segmentExt) }

func parseSegmentName(name string) (segment, bool) {
	if len(name) != 16+1+16+len(segmentExt) || name[16] != '-' || !strings.HasSuffix(name, segmentExt) {
		return segment{}, false
	}
	seq, err1 := strconv.ParseUint(name[:16], 16, 64)
	first, err2 := strconv.ParseUint(name[17:33], 16, 64)
	if err1 != nil || err2 != nil {
		return segment{}, false
	}
	return segment{seq: seq, first: first}, true
}

// listSegments returns the segments in dir sorted by sequence number.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var segs []segment
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		if s, ok := parseSegmentName(de.Name()); ok {
			segs = append(segs, s)
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seq < segs[j].seq })
	return segs, nil
}

// syncDir makes creations, renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: open dir for sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: sync dir %s: %w", dir, err)
	}
	return nil
}

func segmentPath(dir string, s segment) string { return filepath.Join(dir, s.name()) }

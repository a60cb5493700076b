package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
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
	err = fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: sync dir %s: %w", dir, err)
	}
	return nil
}

func segmentPath(dir string, s segment) string { return filepath.Join(dir, s.name()) }

// manifestName is the file recording the newest segment: the one fact a
// directory listing cannot prove, since losing the newest segments leaves
// a chain that looks complete.
const manifestName = "MANIFEST"

// readManifest returns the newest segment the manifest records, or nil if
// there is no manifest (a fresh directory, or one written before it existed).
func readManifest(dir string) (*segment, error) {
	path := filepath.Join(dir, manifestName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: read manifest: %w", err)
	}
	name, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "newest ")
	s, ok2 := parseSegmentName(name)
	if !ok || !ok2 {
		return nil, &CorruptionError{File: path, Offset: -1, Reason: fmt.Sprintf("unreadable manifest %q", b)}
	}
	return &s, nil
}

// writeManifest records s as the newest segment: written to a temp file,
// fsynced, renamed over the old one and the directory fsynced.
func writeManifest(dir string, s segment) error {
	path := filepath.Join(dir, manifestName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("wal: write manifest: %w", err)
	}
	_, err = f.WriteString("newest " + s.name() + "\n")
	if err == nil {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wal: write manifest: %w", err)
	}
	return syncDir(dir)
}

// tornIndexes reads, as far as the bytes allow, the entry indexes held by
// the records of a torn tail. Checksums are ignored: the result only
// describes what a repair dropped.
func tornIndexes(b []byte) (from, to uint64) {
	for len(b) > headerSize {
		n := int(binary.LittleEndian.Uint32(b[0:4]))
		if n == 0 || n > maxRecordSize {
			return from, to
		}
		p := b[headerSize:min(len(b), headerSize+n)]
		if len(p) > 0 && p[0] == recEntry {
			if idx, ok := entryIndex(p[1:]); ok {
				if from == 0 {
					from = idx
				}
				to = idx
			}
		}
		if headerSize+n >= len(b) {
			break
		}
		b = b[headerSize+n:]
	}
	return from, to
}

// entryIndex scans a possibly truncated raftpb.Entry encoding for its
// Index field (number 3).
func entryIndex(p []byte) (uint64, bool) {
	for len(p) > 0 {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 {
			return 0, false
		}
		p = p[n:]
		if num == 3 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(p)
			return v, n > 0
		}
		n = protowire.ConsumeFieldValue(num, typ, p)
		if n < 0 {
			return 0, false
		}
		p = p[n:]
	}
	return 0, false
}

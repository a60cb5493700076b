package wal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const defaultSegmentSize = 64 << 20

// fsync calls f.Sync: every fsync of a segment file, the manifest or the
// directory goes through it. FuzzDecode replaces it with a no-op, because
// recovery's logic does not depend on durability and an fsync per run
// (milliseconds) starves the fuzzer.
var fsync = func(f syncer) error { return f.Sync() }

// syncer is what fsync needs: an *os.File, or a segmentFile.
type syncer interface{ Sync() error }

var (
	// ErrCorrupt matches every *CorruptionError via errors.Is.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("wal: closed")
	// ErrRecordTooLarge is returned by Save for a record recovery would refuse to read.
	ErrRecordTooLarge = errors.New("wal: record too large")
	// ErrNotContiguous is returned by Save for entries that would leave a hole
	// in the log (recovery would reject the WAL).
	ErrNotContiguous = errors.New("wal: entries not contiguous")
	// ErrReleaseBeyondSnapshot is returned by ReleaseTo when no saved snapshot
	// marker covers the index: deleting those entries would lose them.
	ErrReleaseBeyondSnapshot = errors.New("wal: release index beyond latest snapshot marker")
	// ErrNoSpace matches every *NoSpaceError via errors.Is.
	ErrNoSpace = errors.New("wal: no space left on device")
)

// spillSize is how many buffered bytes Save lets accumulate before it hands
// them to the OS on its own.
const spillSize = 256 << 10

// NoSpaceError is returned by Flush, Sync and ReleaseTo (and by Open when a
// new segment cannot be created) when the file system is full. Nothing is
// lost and the WAL stays usable: the file was cut back to its last complete
// record, every record saved so far is still buffered, and a later Flush or
// Sync writes it again. See doc.go.
type NoSpaceError struct {
	File string
	Err  error
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("wal: no space left on device writing %s: %v", e.File, e.Err)
}

// Is makes errors.Is(err, ErrNoSpace) hold.
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }
func (e *NoSpaceError) Unwrap() error        { return e.Err }

// IsNoSpace reports whether err is a file system's "no space left on
// device" (or "disk quota exceeded").
func IsNoSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Options configures Open.
type Options struct {
	SegmentSize int64        // rotate when the current segment passes this size; default 64 MiB
	Logger      *slog.Logger // one line when a torn tail is repaired; nil = slog.Default()
	// MinIndex, when set, is an index the log must reach (the caller's
	// newest snapshot file): a log that ends before it lost entries, and
	// Open refuses it.
	MinIndex uint64
	// ZeroAhead, when positive, keeps about this many bytes of zeros
	// written (and fsynced) past the last record of the current segment,
	// so that an fsync after appending has no file size to commit: on ext4
	// that halves its latency. For the fsync-per-write mode; see doc.go,
	// "Zeros written ahead".
	ZeroAhead int64
	// OnSync, when set, is called after every fsync of a segment file with
	// its duration, on the goroutine that called the WAL method.
	OnSync func(time.Duration)
	// Faults, when set, injects one storage failure (tests only).
	Faults *Faults
}

// Contents is what Open recovered. The pointers are never nil; raftpb
// messages are protobuf-go v2 structs that must not be copied by value.
type Contents struct {
	// Snapshot is the latest snapshot marker (zero if none); only Index and Term are recorded.
	Snapshot *raftpb.SnapshotMetadata
	// HardState is the last HardState saved (zero if none).
	HardState *raftpb.HardState
	// Entries are the entries with Index > Snapshot.Index, contiguous and in
	// order, with raft overwrites resolved.
	Entries []*raftpb.Entry
	// RepairedBytes is how much was cut off a torn tail (0 if none).
	RepairedBytes int64
	// Repair describes the torn tail that was cut off; nil if none.
	Repair *Repair
}

// Repair describes a torn tail cut off the last segment.
type Repair struct {
	File   string
	Offset int64  // where the file now ends
	Bytes  int64  // bytes dropped
	Reason string // what was wrong with the tail
	// KeptIndex is the last index the log still holds. DroppedFrom and
	// DroppedTo are the entry indexes the dropped bytes held, as far as
	// they could be decoded (0, 0: no entry could be read from them).
	KeptIndex, DroppedFrom, DroppedTo uint64
}

// Dropped describes the dropped index range for a log line.
func (r *Repair) Dropped() string {
	switch {
	case r.DroppedFrom == 0:
		return fmt.Sprintf("no decodable entry (the log keeps every index through %d)", r.KeptIndex)
	case r.DroppedFrom == r.DroppedTo:
		return fmt.Sprintf("index %d", r.DroppedFrom)
	}
	return fmt.Sprintf("indexes %d..%d", r.DroppedFrom, r.DroppedTo)
}

// Stats are cumulative counters for metrics.
type Stats struct {
	BytesWritten int64
	Syncs        int64 // fsyncs of segment files
	Segments     int   // live segment files
	SyncDuration time.Duration
}

// CorruptionError reports damage recovery refuses to repair. File is a
// segment, the manifest or, for a damaged chain, the WAL directory; Offset
// is -1 when the damage is not one record's.
type CorruptionError struct {
	File   string
	Offset int64
	Reason string
}

func (e *CorruptionError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("wal: refusing to open %s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("wal: corrupt record in %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// logState is the index bookkeeping shared by recovery and the writer, so
// that the writer refuses exactly what recovery would reject.
type logState struct {
	lastIndex uint64 // last entry index, or the snapshot index if that is higher
	snapIndex uint64
	snapTerm  uint64
}

// checkEntry returns why an entry with index idx may not follow, or "".
func (s *logState) checkEntry(idx uint64) string {
	switch {
	case idx == 0:
		return "entry index 0"
	case idx <= s.snapIndex:
		return fmt.Sprintf("entry index %d at or below snapshot index %d", idx, s.snapIndex)
	case idx > s.lastIndex+1:
		return fmt.Sprintf("entry index %d leaves a gap after index %d", idx, s.lastIndex)
	}
	return ""
}

func (s *logState) snapshot(index, term uint64) {
	s.snapIndex, s.snapTerm = index, term
	if index > s.lastIndex {
		s.lastIndex = index
	}
}

func (s *logState) marker() *raftpb.SnapshotMetadata {
	m := &raftpb.SnapshotMetadata{}
	if s.snapIndex != 0 {
		m.Index = proto.Uint64(s.snapIndex)
	}
	if s.snapTerm != 0 {
		m.Term = proto.Uint64(s.snapTerm)
	}
	return m
}

func isEmptyHardState(hs *raftpb.HardState) bool {
	return hs == nil || (hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0)
}

// segmentFile is the current segment's *os.File (an interface so tests can
// make writes fail as on a full disk).
type segmentFile interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
	Name() string
}

// WAL is an open write-ahead log positioned for append.
type WAL struct {
	dir       string
	segSize   int64
	zeroAhead int64
	logger    *slog.Logger
	onSync    func(time.Duration)
	faults    *Faults

	segs []segment // live segments, oldest first; the last one is current
	f    segmentFile
	off  int64 // bytes of the current segment the OS holds
	// filled is where the current segment's file ends: records up to off,
	// then zeros written ahead (ZeroAhead) up to filled.
	filled int64
	buf    []byte // complete records saved but not yet handed to the OS
	dirty  bool   // bytes handed to the OS since the last fsync

	st logState
	hs *raftpb.HardState // latest saved, re-recorded at the start of each segment

	err    error // sticky: see doc.go
	closed bool

	bytesWritten atomic.Int64
	syncs        atomic.Int64
	segments     atomic.Int64
	syncNanos    atomic.Int64
}

// Open recovers the log in dir (creating dir if missing), repairs a torn
// tail, and returns a WAL positioned to append after the last good record.
// It refuses, with a *CorruptionError naming the file or directory and
// the gap, a log that lost a segment (see doc.go).
func Open(dir string, opts Options) (*WAL, *Contents, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = defaultSegmentSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("wal: create dir: %w", err)
	}
	w := &WAL{
		dir:       dir,
		segSize:   opts.SegmentSize,
		zeroAhead: opts.ZeroAhead,
		logger:    opts.Logger,
		onSync:    opts.OnSync,
		faults:    opts.Faults,
		hs:        &raftpb.HardState{},
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, nil, err
	}
	man, err := readManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	if len(segs) == 0 {
		if man != nil {
			return nil, nil, &CorruptionError{File: dir, Offset: -1, Reason: fmt.Sprintf(
				"no segment files, but %s records segment %s (from index %d) as the newest: every entry of the log was lost",
				manifestName, man.name(), man.first)}
		}
		if opts.MinIndex > 0 {
			return nil, nil, &CorruptionError{File: dir, Offset: -1, Reason: fmt.Sprintf(
				"no segment files, but a snapshot at index %d exists: the log was lost", opts.MinIndex)}
		}
		if err := w.startSegment(segment{seq: 0, first: 1}); err != nil {
			w.closeFile()
			return nil, nil, err
		}
		return w, &Contents{Snapshot: &raftpb.SnapshotMetadata{}, HardState: &raftpb.HardState{}}, nil
	}
	c, err := w.recover(segs, man, opts.MinIndex)
	if err != nil {
		w.closeFile()
		return nil, nil, err
	}
	return w, c, nil
}

// recovery accumulates state while segments are replayed.
type recovery struct {
	st     logState
	hs     *raftpb.HardState
	ents   []*raftpb.Entry
	segMax uint64 // highest entry index seen in the segment being read
}

// apply replays one payload and returns why it is invalid, or "".
func (rc *recovery) apply(p []byte) string {
	switch p[0] {
	case recEntry:
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(p[1:], e); err != nil {
			return fmt.Sprintf("undecodable entry: %v", err)
		}
		idx := e.GetIndex()
		if reason := rc.st.checkEntry(idx); reason != "" {
			return reason
		}
		if n := len(rc.ents); n > 0 && idx <= rc.ents[n-1].GetIndex() {
			// A raft overwrite: everything from idx on is superseded.
			first := rc.ents[0].GetIndex()
			if idx <= first {
				rc.ents = rc.ents[:0]
			} else {
				rc.ents = rc.ents[:idx-first]
			}
		}
		rc.ents = append(rc.ents, e)
		rc.st.lastIndex = idx
		rc.segMax = max(rc.segMax, idx)
	case recHardState:
		hs := &raftpb.HardState{}
		if err := proto.Unmarshal(p[1:], hs); err != nil {
			return fmt.Sprintf("undecodable hard state: %v", err)
		}
		rc.hs = hs
	case recSnapshot:
		m := &raftpb.SnapshotMetadata{}
		if err := proto.Unmarshal(p[1:], m); err != nil {
			return fmt.Sprintf("undecodable snapshot marker: %v", err)
		}
		rc.st.snapshot(m.GetIndex(), m.GetTerm())
		if n := len(rc.ents); n > 0 {
			first, last := rc.ents[0].GetIndex(), rc.ents[n-1].GetIndex()
			switch {
			case m.GetIndex() >= last:
				rc.ents = rc.ents[:0]
			case m.GetIndex() >= first:
				rc.ents = append(rc.ents[:0], rc.ents[m.GetIndex()-first+1:]...)
			}
		}
	default:
		return fmt.Sprintf("unknown record type %d", p[0])
	}
	return ""
}

// segmentRead is what readSegment found in one segment.
type segmentRead struct {
	end, size  int64 // good data ends at end; size is the file size
	zeroTail   bool  // only zeros follow end: nothing to repair
	nrec       int
	tornReason string
	torn       []byte // the first bytes of a torn tail, for Repair's index range
}

// readSegment replays one segment. For the last segment it returns the
// offset good data ends at (less than size for a torn tail) without
// modifying the file, so that corruption found later leaves disk untouched.
func (rc *recovery) readSegment(path string, f *os.File, last bool) (segmentRead, error) {
	fi, err := f.Stat()
	if err != nil {
		return segmentRead{}, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 && !last {
		return segmentRead{}, &CorruptionError{File: path, Offset: 0, Reason: "empty segment in the middle of the log: its entries were lost"}
	}
	rr := newRecordReader(f, size)
	nrec := 0
	for {
		off := rr.off
		p, err := rr.next()
		if err == io.EOF {
			break
		}
		var de *decodeError
		if errors.As(err, &de) {
			if de.zeros && last {
				return segmentRead{end: de.offset, size: size, zeroTail: true, nrec: nrec}, nil
			}
			if de.torn && last {
				sr := segmentRead{end: de.offset, size: size, nrec: nrec, tornReason: de.reason}
				sr.torn = make([]byte, min(size-de.offset, 4096))
				if _, err := f.ReadAt(sr.torn, de.offset); err != nil && err != io.EOF {
					return segmentRead{}, fmt.Errorf("wal: read %s: %w", path, err)
				}
				return sr, nil
			}
			reason := de.reason
			if de.torn {
				reason += " in a non-final segment"
			}
			return segmentRead{}, &CorruptionError{File: path, Offset: de.offset, Reason: reason}
		}
		if err != nil {
			return segmentRead{}, fmt.Errorf("%s: %w", path, err)
		}
		// The two-record segment header is what lets older segments be
		// deleted; its absence in a complete segment means damage.
		if (nrec == 0 && p[0] != recSnapshot) || (nrec == 1 && p[0] != recHardState) {
			return segmentRead{}, &CorruptionError{File: path, Offset: off, Reason: fmt.Sprintf("segment header record %d has type %d", nrec, p[0])}
		}
		if reason := rc.apply(p); reason != "" {
			return segmentRead{}, &CorruptionError{File: path, Offset: off, Reason: reason}
		}
		nrec++
	}
	if nrec < 2 && !last {
		return segmentRead{}, &CorruptionError{File: path, Offset: size, Reason: "segment header incomplete in a non-final segment"}
	}
	return segmentRead{end: size, size: size, nrec: nrec}, nil
}

// checkChain verifies the segment sequence against itself and the manifest.
func (w *WAL) checkChain(segs []segment, man *segment) error {
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return &CorruptionError{File: w.dir, Offset: -1, Reason: fmt.Sprintf(
				"segment with sequence %d is missing between %s and %s: the entries from index %d to %d were lost",
				segs[i-1].seq+1, segs[i-1].name(), segs[i].name(), segs[i-1].first, segs[i].first-1)}
		}
	}
	if man == nil {
		return nil // a WAL written before the manifest existed
	}
	last := segs[len(segs)-1]
	switch {
	case last.seq < man.seq:
		return &CorruptionError{File: w.dir, Offset: -1, Reason: fmt.Sprintf(
			"%s records segment %s (from index %d) as the newest, but the newest segment file is %s: the entries from index %d on were lost",
			manifestName, man.name(), man.first, last.name(), last.first)}
	case last.seq == man.seq && last.first != man.first:
		return &CorruptionError{File: w.dir, Offset: -1, Reason: fmt.Sprintf(
			"%s records segment %s but the file is named %s", manifestName, man.name(), last.name())}
	case last.seq > man.seq+1:
		return &CorruptionError{File: w.dir, Offset: -1, Reason: fmt.Sprintf(
			"%s records segment %s as the newest, but segments up to %s exist: the manifest is stale",
			manifestName, man.name(), last.name())}
	}
	return nil
}

// missingManifest is the refusal of segments without a manifest. The
// manifest is written before the first segment can take an entry, so
// segments beyond a bare first one without it mean it was lost, and with
// it the only record of which segment is the newest.
func (w *WAL) missingManifest(segs []segment, lastIndex uint64) error {
	first, last := segs[0], segs[len(segs)-1]
	man := filepath.Join(w.dir, manifestName)
	held := "segment " + first.name()
	if len(segs) > 1 {
		held = fmt.Sprintf("segments %s to %s", first.name(), last.name())
	}
	return &CorruptionError{File: w.dir, Offset: -1, Reason: fmt.Sprintf(
		"%s is missing, but the directory holds %s (the log found ends at index %d): "+
			"%s records the newest segment, and without it the loss of newer segments and their entries cannot be ruled out. "+
			"Restore the data dir from a backup, or replace a cluster member's data dir "+
			"(member remove, then a new member with an empty data dir and -join); "+
			"if only %s was lost and %s is known to be the newest segment, recreate %s holding the line %q",
		man, held, lastIndex, manifestName, manifestName, last.name(), manifestName, "newest "+last.name())}
}

func (w *WAL) recover(segs []segment, man *segment, minIndex uint64) (*Contents, error) {
	if err := w.checkChain(segs, man); err != nil {
		return nil, err
	}
	rc := &recovery{hs: &raftpb.HardState{}}
	var sr segmentRead
	for i := range segs {
		s := &segs[i]
		path := segmentPath(w.dir, *s)
		last := i == len(segs)-1
		if i == 0 {
			if s.first == 0 {
				return nil, &CorruptionError{File: path, Offset: -1, Reason: "segment first index is 0"}
			}
			rc.st.lastIndex = s.first - 1
		} else if s.first != rc.st.lastIndex+1 {
			return nil, &CorruptionError{File: path, Offset: -1, Reason: fmt.Sprintf("segment first index %d does not follow index %d", s.first, rc.st.lastIndex)}
		}
		flag := os.O_RDONLY
		if last {
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return nil, fmt.Errorf("wal: open segment: %w", err)
		}
		rc.segMax = 0
		sr, err = rc.readSegment(path, f, last)
		s.maxIndex = rc.segMax
		if last {
			w.f = w.wrap(f)
		} else {
			f.Close()
		}
		if err != nil {
			return nil, err
		}
	}
	cur := segs[len(segs)-1]
	path := segmentPath(w.dir, cur)
	if man == nil && !(len(segs) == 1 && cur.seq == 0 && sr.nrec <= 2) {
		return nil, w.missingManifest(segs, rc.st.lastIndex)
	}
	// A manifest that names the last segment says its header was durable:
	// an empty (or header-less) last segment then lost its contents. Only
	// a segment newer than the manifest can be a rotation cut short.
	if sr.nrec < 2 && man != nil && man.seq == cur.seq {
		return nil, &CorruptionError{File: path, Offset: -1, Reason: fmt.Sprintf(
			"the newest segment is empty (%d bytes, %d records) although %s records it as complete: the entries from index %d on were lost",
			sr.size, sr.nrec, manifestName, cur.first)}
	}
	if len(rc.ents) > 0 && rc.ents[0].GetIndex() != rc.st.snapIndex+1 {
		return nil, &CorruptionError{File: segmentPath(w.dir, segs[0]), Offset: -1, Reason: fmt.Sprintf(
			"entries start at %d but the snapshot marker is at %d: the entries from index %d to %d were lost",
			rc.ents[0].GetIndex(), rc.st.snapIndex, rc.st.snapIndex+1, rc.ents[0].GetIndex()-1)}
	}
	if c := rc.hs.GetCommit(); c > rc.st.lastIndex {
		return nil, &CorruptionError{File: w.dir, Offset: -1, Reason: fmt.Sprintf(
			"the log ends at index %d but its hard state records index %d as committed: the entries from index %d to %d were lost",
			rc.st.lastIndex, c, rc.st.lastIndex+1, c)}
	}
	if minIndex > rc.st.lastIndex {
		return nil, &CorruptionError{File: w.dir, Offset: -1, Reason: fmt.Sprintf(
			"the log ends at index %d but a snapshot at index %d exists: the entries from index %d to %d were lost",
			rc.st.lastIndex, minIndex, rc.st.lastIndex+1, minIndex)}
	}
	c := &Contents{Snapshot: rc.st.marker(), HardState: rc.hs}
	if len(rc.ents) > 0 {
		c.Entries = rc.ents
	}

	if sr.end < sr.size && !sr.zeroTail {
		if err := w.f.Truncate(sr.end); err != nil {
			return nil, fmt.Errorf("wal: repair %s: %w", path, err)
		}
		if err := fsync(w.f); err != nil {
			return nil, fmt.Errorf("wal: repair %s: %w", path, err)
		}
		c.RepairedBytes = sr.size - sr.end
		c.Repair = &Repair{File: path, Offset: sr.end, Bytes: sr.size - sr.end, Reason: sr.tornReason, KeptIndex: rc.st.lastIndex}
		c.Repair.DroppedFrom, c.Repair.DroppedTo = tornIndexes(sr.torn)
		w.logger.Warn("wal: repaired torn tail of the last segment", "file", path, "offset", sr.end,
			"bytes_dropped", c.Repair.Bytes, "dropped", c.Repair.Dropped(), "last_index_kept", rc.st.lastIndex, "reason", sr.tornReason)
	}
	w.segs = segs
	w.segments.Store(int64(len(segs)))
	w.st = rc.st
	w.hs = rc.hs
	w.off, w.filled = sr.end, sr.end
	if sr.zeroTail {
		w.filled = sr.size // keep writing into the zeros
	}
	if sr.nrec < 2 {
		// A crash while a segment was being started left its header
		// incomplete; rewrite it so the segment can stand alone later.
		if err := w.f.Truncate(0); err != nil {
			return nil, fmt.Errorf("wal: rewrite header of %s: %w", path, err)
		}
		w.off, w.filled = 0, 0
		w.appendHeader()
		if err := w.syncCurrent(); err != nil {
			return nil, err
		}
	}
	if man == nil || man.seq != cur.seq {
		if err := writeManifest(w.dir, cur); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Save appends entries and then, unless empty, the HardState. Entries go
// first so that a torn batch can never leave a commit index pointing past
// the entries that survived. Nothing is durable until Sync. A full disk is
// not an error here: the records stay buffered and Flush or Sync report it.
func (w *WAL) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	if err := w.usable(); err != nil {
		return err
	}
	st := w.st
	for _, e := range ents {
		if e == nil {
			return fmt.Errorf("%w: nil entry", ErrNotContiguous)
		}
		if reason := st.checkEntry(e.GetIndex()); reason != "" {
			return fmt.Errorf("%w: %s", ErrNotContiguous, reason)
		}
		st.lastIndex = e.GetIndex()
	}
	saveHS := !isEmptyHardState(hs)
	if saveHS && hs.GetCommit() > st.lastIndex {
		return fmt.Errorf("%w: hard state commits index %d, the log ends at %d", ErrNotContiguous, hs.GetCommit(), st.lastIndex)
	}
	start := len(w.buf)
	buf := w.buf
	var err error
	for _, e := range ents {
		if buf, err = appendRecord(buf, recEntry, e); err != nil {
			w.buf = buf[:start]
			return err
		}
	}
	if saveHS {
		if buf, err = appendRecord(buf, recHardState, hs); err != nil {
			w.buf = buf[:start]
			return err
		}
	}
	w.buf = buf
	if len(buf) == start {
		return nil
	}
	w.st = st
	cur := &w.segs[len(w.segs)-1]
	for _, e := range ents {
		cur.maxIndex = max(cur.maxIndex, e.GetIndex())
	}
	if saveHS {
		w.hs = proto.Clone(hs).(*raftpb.HardState)
	}
	return w.spill()
}

// SaveSnapshot records a snapshot marker. It is not synced here (the caller
// picks the durability mode), but ReleaseTo syncs before deleting anything.
func (w *WAL) SaveSnapshot(meta *raftpb.SnapshotMetadata) error {
	if err := w.usable(); err != nil {
		return err
	}
	st := w.st
	st.snapshot(meta.GetIndex(), meta.GetTerm())
	buf, err := appendRecord(w.buf, recSnapshot, st.marker())
	if err != nil {
		return err
	}
	w.buf = buf
	w.st = st
	return w.spill()
}

// spill hands buffered records to the OS once there are many, and rotates
// a full segment. Space shortage is left for Flush and Sync to report.
func (w *WAL) spill() error {
	var err error
	switch {
	case w.off+int64(len(w.buf)) >= w.segSize:
		err = w.rotate()
	case len(w.buf) >= spillSize:
		err = w.writeBuf()
	}
	if errors.Is(err, ErrNoSpace) {
		return nil
	}
	return err
}

// Flush hands buffered records to the OS without fsync: they then survive a
// process crash but not a machine crash. For the no-fsync durability mode.
// A *NoSpaceError leaves everything buffered for the next call.
func (w *WAL) Flush() error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.writeBuf(); err != nil {
		return err
	}
	return w.maybeRotate()
}

// Sync flushes and fsyncs the current segment; it is the group-commit point.
// A *NoSpaceError leaves everything buffered for the next call.
func (w *WAL) Sync() error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.writeBuf(); err != nil {
		return err
	}
	if w.dirty {
		if err := w.syncCurrent(); err != nil {
			return err
		}
	}
	return w.maybeRotate()
}

// ReleaseTo deletes the oldest segments whose entries are all <= index. The
// current segment is never deleted, and only a prefix is, so the remaining
// chain stays contiguous. index must be covered by a saved snapshot marker.
func (w *WAL) ReleaseTo(index uint64) error {
	if err := w.usable(); err != nil {
		return err
	}
	if index > w.st.snapIndex {
		return fmt.Errorf("%w: index %d, snapshot marker at %d", ErrReleaseBeyondSnapshot, index, w.st.snapIndex)
	}
	// The marker that justifies the deletion must be durable first, or a
	// crash could leave neither the entries nor the snapshot that replaced them.
	if err := w.Sync(); err != nil {
		return err
	}
	n := 0
	var rmErr error
	for n < len(w.segs)-1 && w.segs[n].maxIndex <= index {
		if err := os.Remove(segmentPath(w.dir, w.segs[n])); err != nil && !errors.Is(err, os.ErrNotExist) {
			rmErr = fmt.Errorf("wal: release segment: %w", err)
			break
		}
		n++
	}
	if n == 0 {
		return rmErr
	}
	w.segs = append(w.segs[:0], w.segs[n:]...)
	w.segments.Store(int64(len(w.segs)))
	if err := syncDir(w.dir); err != nil {
		return err
	}
	return rmErr
}

// Close syncs and closes the WAL. It is idempotent; after the first call
// every other method returns ErrClosed.
func (w *WAL) Close() error {
	if w.closed {
		return nil
	}
	err := w.Sync()
	w.closed = true
	if cerr := w.closeFile(); err == nil {
		err = cerr
	}
	return err
}

// Dir is the directory the WAL lives in.
func (w *WAL) Dir() string { return w.dir }

// Stats may be called from any goroutine.
func (w *WAL) Stats() Stats {
	return Stats{
		BytesWritten: w.bytesWritten.Load(),
		Syncs:        w.syncs.Load(),
		Segments:     int(w.segments.Load()),
		SyncDuration: time.Duration(w.syncNanos.Load()),
	}
}

func (w *WAL) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

func (w *WAL) closeFile() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("wal: close segment: %w", err)
	}
	return nil
}

func (w *WAL) fail(err error) error {
	w.err = err
	return err
}

// writeBuf hands the buffered records to the OS at the end of the current
// segment. On a full disk the file is cut back to where it ended, so it
// still ends on a record boundary, and the records stay buffered.
func (w *WAL) writeBuf() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.f.WriteAt(w.buf, w.off)
	if n > 0 {
		w.dirty = true
	}
	if err != nil {
		if !IsNoSpace(err) {
			return w.fail(fmt.Errorf("wal: write: %w", err))
		}
		if n > 0 {
			if terr := w.f.Truncate(w.off); terr != nil {
				return w.fail(fmt.Errorf("wal: cutting %s back to offset %d after %v: %w", w.f.Name(), w.off, err, terr))
			}
			w.filled = w.off
		}
		w.zeroAhead = 0 // see fillAhead
		return &NoSpaceError{File: w.f.Name(), Err: err}
	}
	w.off += int64(n)
	w.filled = max(w.filled, w.off)
	w.bytesWritten.Add(int64(n))
	// A huge batch should not pin its buffer for the life of the WAL.
	if cap(w.buf) <= 1<<20 {
		w.buf = w.buf[:0]
	} else {
		w.buf = nil
	}
	return nil
}

func (w *WAL) syncCurrent() error {
	start := time.Now()
	if err := w.writeBuf(); err != nil {
		return err
	}
	w.fillAhead()
	if err := fsync(w.f); err != nil {
		return w.fail(fmt.Errorf("wal: fsync: %w", err))
	}
	d := time.Since(start)
	w.syncs.Add(1)
	w.syncNanos.Add(int64(d))
	if w.onSync != nil {
		w.onSync(d)
	}
	w.dirty = false
	return nil
}

// fillAhead writes zeros past the records when fewer than half of
// ZeroAhead are left, up to ZeroAhead past them, while the segment is below
// its rotation size; the fsync that follows makes the new length durable
// once for the many appends that will land in the zeros.
//
// The zeros are an optimisation and must never take space the records
// need (a freed disk reserve, the manifest of the next segment): when
// writing them fails, what was written is cut off again and no more zeros
// are written ahead until the WAL is opened again; a full disk elsewhere
// (noSpace) stops them the same way.
func (w *WAL) fillAhead() {
	if w.zeroAhead <= 0 || w.off >= w.segSize || w.filled-w.off >= w.zeroAhead/2 {
		return
	}
	from, to := w.filled, min(w.off+w.zeroAhead, w.segSize)
	var err error
	if zf, ok := w.f.(interface{ zeroFill(from, to int64) error }); ok {
		err = zf.zeroFill(from, to)
	} else {
		err = WriteZeros(w.f, from, to)
	}
	if err != nil {
		_ = w.f.Truncate(from)
		w.zeroAhead = 0
		return
	}
	w.filled = to
	w.dirty = true
}

var zeroChunk [256 << 10]byte

// WriteZeros writes zeros over [from, to) of f.
func WriteZeros(f interface {
	WriteAt([]byte, int64) (int, error)
}, from, to int64) error {
	for from < to {
		n, err := f.WriteAt(zeroChunk[:min(int64(len(zeroChunk)), to-from)], from)
		if err != nil {
			return err
		}
		from += int64(n)
	}
	return nil
}

// appendHeader buffers the two records every segment starts with.
func (w *WAL) appendHeader() {
	buf, err := appendRecord(w.buf, recSnapshot, w.st.marker())
	if err == nil {
		buf, err = appendRecord(buf, recHardState, w.hs)
	}
	if err != nil {
		panic(fmt.Sprintf("wal: encoding a segment header: %v", err)) // two small fixed messages
	}
	w.buf = buf
}

func (w *WAL) maybeRotate() error {
	if w.off+int64(len(w.buf)) < w.segSize {
		return nil
	}
	return w.rotate()
}

// rotate completes the current segment and starts the next one. On a full
// disk the current segment stays current and the next call tries again.
func (w *WAL) rotate() error {
	// The outgoing segment becomes non-final and must be complete on disk,
	// and end at its last record (no zeros written ahead: see doc.go).
	if err := w.writeBuf(); err != nil {
		return err
	}
	if w.filled > w.off {
		if err := w.f.Truncate(w.off); err != nil {
			return w.fail(fmt.Errorf("wal: cutting the zeros off %s: %w", w.f.Name(), err))
		}
		w.filled = w.off
		w.dirty = true
	}
	if w.dirty {
		if err := w.syncCurrent(); err != nil {
			return err
		}
	}
	old := w.f
	cur := w.segs[len(w.segs)-1]
	if err := w.startSegment(segment{seq: cur.seq + 1, first: w.st.lastIndex + 1}); err != nil {
		return err
	}
	if err := old.Close(); err != nil {
		return w.fail(fmt.Errorf("wal: close segment: %w", err))
	}
	return nil
}

// startSegment creates s, writes its header and makes both the file and its
// directory entry durable before any entry can land in it, then records it
// in the manifest. On failure the new file is removed and the WAL is as
// before (poisoned unless the disk was merely full).
func (w *WAL) startSegment(s segment) error {
	path := segmentPath(w.dir, s)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		if IsNoSpace(err) {
			w.zeroAhead = 0 // see fillAhead
			return &NoSpaceError{File: path, Err: err}
		}
		return w.fail(fmt.Errorf("wal: create segment: %w", err))
	}
	prevF, prevOff, prevFilled, prevDirty, prevSegs := w.f, w.off, w.filled, w.dirty, len(w.segs)
	w.f, w.off, w.filled, w.dirty = w.wrap(f), 0, 0, false
	w.segs = append(w.segs, s)
	w.appendHeader()
	err = w.syncCurrent()
	if err == nil {
		err = syncDir(w.dir)
	}
	if err == nil {
		err = writeManifest(w.dir, s)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		w.f, w.off, w.filled, w.dirty = prevF, prevOff, prevFilled, prevDirty
		w.segs = w.segs[:prevSegs]
		w.buf = w.buf[:0]
		if IsNoSpace(err) {
			w.zeroAhead = 0 // see fillAhead
			w.err = nil     // syncCurrent poisons on any error; a full disk is not fatal here
			var ns *NoSpaceError
			if !errors.As(err, &ns) {
				err = &NoSpaceError{File: path, Err: err}
			}
			return err
		}
		return w.fail(err)
	}
	w.segments.Store(int64(len(w.segs)))
	return nil
}

package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const defaultSegmentSize = 64 << 20

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
)

// Options configures Open.
type Options struct {
	SegmentSize int64        // rotate when the current segment passes this size; default 64 MiB
	Logger      *slog.Logger // one line when a torn tail is repaired; nil = slog.Default()
	// OnSync, when set, is called after every fsync of a segment file with
	// its duration, on the goroutine that called the WAL method.
	OnSync func(time.Duration)
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
}

// Stats are cumulative counters for metrics.
type Stats struct {
	BytesWritten int64
	Syncs        int64 // fsyncs of segment files
	Segments     int   // live segment files
	SyncDuration time.Duration
}

// CorruptionError reports damage recovery refuses to repair.
type CorruptionError struct {
	File   string
	Offset int64
	Reason string
}

func (e *CorruptionError) Error() string {
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

// WAL is an open write-ahead log positioned for append.
type WAL struct {
	dir     string
	segSize int64
	logger  *slog.Logger
	onSync  func(time.Duration)

	segs  []segment // live segments, oldest first; the last one is current
	f     *os.File
	bw    *bufio.Writer
	size  int64 // size of the current segment including buffered bytes
	dirty bool  // bytes written since the last fsync

	st  logState
	hs  *raftpb.HardState // latest saved, re-recorded at the start of each segment
	enc []byte            // reused encode buffer

	err    error // sticky: see doc.go
	closed bool

	bytesWritten atomic.Int64
	syncs        atomic.Int64
	segments     atomic.Int64
	syncNanos    atomic.Int64
}

// Open recovers the log in dir (creating dir if missing), repairs a torn
// tail, and returns a WAL positioned to append after the last good record.
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
		dir:     dir,
		segSize: opts.SegmentSize,
		logger:  opts.Logger,
		onSync:  opts.OnSync,
		hs:      &raftpb.HardState{},
		bw:      bufio.NewWriterSize(nil, 256<<10),
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, nil, err
	}
	if len(segs) == 0 {
		if err := w.startSegment(segment{seq: 0, first: 1}); err != nil {
			w.closeFile()
			return nil, nil, err
		}
		return w, &Contents{Snapshot: &raftpb.SnapshotMetadata{}, HardState: &raftpb.HardState{}}, nil
	}
	c, err := w.recover(segs)
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

// readSegment replays one segment. For the last segment it returns the
// offset good data ends at (less than size for a torn tail) without
// modifying the file, so that corruption found later leaves disk untouched.
func (rc *recovery) readSegment(path string, f *os.File, last bool) (end, size int64, nrec int, tornReason string, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, 0, "", fmt.Errorf("wal: stat %s: %w", path, err)
	}
	size = fi.Size()
	rr := newRecordReader(f, size)
	for {
		off := rr.off
		p, err := rr.next()
		if err == io.EOF {
			break
		}
		var de *decodeError
		if errors.As(err, &de) {
			if de.torn && last {
				return de.offset, size, nrec, de.reason, nil
			}
			reason := de.reason
			if de.torn {
				reason += " in a non-final segment"
			}
			return 0, 0, 0, "", &CorruptionError{File: path, Offset: de.offset, Reason: reason}
		}
		if err != nil {
			return 0, 0, 0, "", fmt.Errorf("%s: %w", path, err)
		}
		// The two-record segment header is what lets older segments be
		// deleted; its absence in a complete segment means damage.
		if (nrec == 0 && p[0] != recSnapshot) || (nrec == 1 && p[0] != recHardState) {
			return 0, 0, 0, "", &CorruptionError{File: path, Offset: off, Reason: fmt.Sprintf("segment header record %d has type %d", nrec, p[0])}
		}
		if reason := rc.apply(p); reason != "" {
			return 0, 0, 0, "", &CorruptionError{File: path, Offset: off, Reason: reason}
		}
		nrec++
	}
	if nrec < 2 && !last {
		return 0, 0, 0, "", &CorruptionError{File: path, Offset: size, Reason: "segment header incomplete in a non-final segment"}
	}
	return size, size, nrec, "", nil
}

func (w *WAL) recover(segs []segment) (*Contents, error) {
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, &CorruptionError{File: segmentPath(w.dir, segs[i]), Reason: fmt.Sprintf("missing segment with sequence %d", segs[i-1].seq+1)}
		}
	}
	rc := &recovery{hs: &raftpb.HardState{}}
	var (
		end, size  int64
		nrec       int
		tornReason string
	)
	for i := range segs {
		s := &segs[i]
		path := segmentPath(w.dir, *s)
		last := i == len(segs)-1
		if i == 0 {
			if s.first == 0 {
				return nil, &CorruptionError{File: path, Reason: "segment first index is 0"}
			}
			rc.st.lastIndex = s.first - 1
		} else if s.first != rc.st.lastIndex+1 {
			return nil, &CorruptionError{File: path, Reason: fmt.Sprintf("segment first index %d does not follow index %d", s.first, rc.st.lastIndex)}
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
		end, size, nrec, tornReason, err = rc.readSegment(path, f, last)
		s.maxIndex = rc.segMax
		if last {
			w.f = f
		} else {
			f.Close()
		}
		if err != nil {
			return nil, err
		}
	}
	if len(rc.ents) > 0 && rc.ents[0].GetIndex() != rc.st.snapIndex+1 {
		return nil, &CorruptionError{File: segmentPath(w.dir, segs[0]), Reason: fmt.Sprintf("entries start at %d but the snapshot marker is at %d", rc.ents[0].GetIndex(), rc.st.snapIndex)}
	}
	c := &Contents{Snapshot: rc.st.marker(), HardState: rc.hs}
	if len(rc.ents) > 0 {
		c.Entries = rc.ents
	}

	cur := segs[len(segs)-1]
	path := segmentPath(w.dir, cur)
	if end < size {
		if err := w.f.Truncate(end); err != nil {
			return nil, fmt.Errorf("wal: repair %s: %w", path, err)
		}
		if err := w.f.Sync(); err != nil {
			return nil, fmt.Errorf("wal: repair %s: %w", path, err)
		}
		c.RepairedBytes = size - end
		w.logger.Warn("wal: repaired torn tail", "file", path, "offset", end, "bytes_removed", size-end, "reason", tornReason)
	}
	w.segs = segs
	w.segments.Store(int64(len(segs)))
	w.st = rc.st
	w.hs = rc.hs
	if _, err := w.f.Seek(end, io.SeekStart); err != nil {
		return nil, fmt.Errorf("wal: seek %s: %w", path, err)
	}
	w.bw.Reset(w.f)
	w.size = end
	if nrec < 2 {
		// A crash while a segment was being started left its header
		// incomplete; rewrite it so the segment can stand alone later.
		if err := w.f.Truncate(0); err != nil {
			return nil, fmt.Errorf("wal: rewrite header of %s: %w", path, err)
		}
		if _, err := w.f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("wal: seek %s: %w", path, err)
		}
		w.size = 0
		if err := w.writeHeader(); err != nil {
			return nil, err
		}
		if err := w.syncCurrent(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Save appends entries and then, unless empty, the HardState. Entries go
// first so that a torn batch can never leave a commit index pointing past
// the entries that survived. Nothing is durable until Sync.
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
	buf := w.enc[:0]
	var err error
	for _, e := range ents {
		if buf, err = appendRecord(buf, recEntry, e); err != nil {
			return err
		}
	}
	if saveHS {
		if buf, err = appendRecord(buf, recHardState, hs); err != nil {
			return err
		}
	}
	if len(buf) == 0 {
		return nil
	}
	if err := w.write(buf); err != nil {
		return err
	}
	w.st = st
	cur := &w.segs[len(w.segs)-1]
	for _, e := range ents {
		cur.maxIndex = max(cur.maxIndex, e.GetIndex())
	}
	if saveHS {
		w.hs = proto.Clone(hs).(*raftpb.HardState)
	}
	return w.maybeRotate()
}

// SaveSnapshot records a snapshot marker. It is not synced here (the caller
// picks the durability mode), but ReleaseTo syncs before deleting anything.
func (w *WAL) SaveSnapshot(meta *raftpb.SnapshotMetadata) error {
	if err := w.usable(); err != nil {
		return err
	}
	st := w.st
	st.snapshot(meta.GetIndex(), meta.GetTerm())
	buf, err := appendRecord(w.enc[:0], recSnapshot, st.marker())
	if err != nil {
		return err
	}
	if err := w.write(buf); err != nil {
		return err
	}
	w.st = st
	return w.maybeRotate()
}

// Flush hands buffered records to the OS without fsync: they then survive a
// process crash but not a machine crash. For the no-fsync durability mode.
func (w *WAL) Flush() error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail(fmt.Errorf("wal: write: %w", err))
	}
	return nil
}

// Sync flushes and fsyncs the current segment; it is the group-commit point.
func (w *WAL) Sync() error {
	if err := w.usable(); err != nil {
		return err
	}
	if !w.dirty {
		return nil
	}
	return w.syncCurrent()
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

func (w *WAL) write(buf []byte) error {
	n, err := w.bw.Write(buf)
	w.size += int64(n)
	w.bytesWritten.Add(int64(n))
	w.dirty = true
	// A huge batch should not pin its buffer for the life of the WAL.
	if cap(buf) <= 1<<20 {
		w.enc = buf[:0]
	} else {
		w.enc = nil
	}
	if err != nil {
		return w.fail(fmt.Errorf("wal: write: %w", err))
	}
	return nil
}

func (w *WAL) syncCurrent() error {
	start := time.Now()
	if err := w.bw.Flush(); err != nil {
		return w.fail(fmt.Errorf("wal: write: %w", err))
	}
	if err := w.f.Sync(); err != nil {
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

func (w *WAL) writeHeader() error {
	buf, err := appendRecord(w.enc[:0], recSnapshot, w.st.marker())
	if err != nil {
		return w.fail(err)
	}
	if buf, err = appendRecord(buf, recHardState, w.hs); err != nil {
		return w.fail(err)
	}
	return w.write(buf)
}

func (w *WAL) maybeRotate() error {
	if w.size < w.segSize {
		return nil
	}
	// The outgoing segment becomes non-final and must be complete on disk.
	if err := w.syncCurrent(); err != nil {
		return err
	}
	if err := w.closeFile(); err != nil {
		return w.fail(err)
	}
	cur := w.segs[len(w.segs)-1]
	return w.startSegment(segment{seq: cur.seq + 1, first: w.st.lastIndex + 1})
}

// startSegment creates s, writes its header and makes both the file and its
// directory entry durable before any entry can land in it.
func (w *WAL) startSegment(s segment) error {
	f, err := os.OpenFile(segmentPath(w.dir, s), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return w.fail(fmt.Errorf("wal: create segment: %w", err))
	}
	w.f = f
	w.bw.Reset(f)
	w.size = 0
	w.segs = append(w.segs, s)
	w.segments.Store(int64(len(w.segs)))
	if err := w.writeHeader(); err != nil {
		return err
	}
	if err := w.syncCurrent(); err != nil {
		return err
	}
	if err := syncDir(w.dir); err != nil {
		return w.fail(err)
	}
	return nil
}

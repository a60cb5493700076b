package wal

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// FaultPoint is a storage failure Faults can inject.
type FaultPoint int

const (
	// CrashAfterWrite lets the chosen write of records reach the file and
	// then crashes before its fsync. With LoseUnsynced the machine is what
	// crashed: every byte not yet fsynced is lost (the file is cut back to
	// its last fsynced length), as after a power cut; otherwise only the
	// process died and the operating system keeps what was written.
	CrashAfterWrite FaultPoint = iota + 1
	// CrashTornWrite lets only part of the chosen write reach the file
	// (cutting a record in two) and then crashes. With LoseUnsynced the
	// bytes written before it since the last fsync are lost as well, except
	// for the torn piece itself: a disk that persisted a later sector and not
	// the earlier ones is beyond what the WAL's recovery promises to handle.
	CrashTornWrite
	// FailSync makes the chosen fsync fail with EIO (the kernel may already
	// have dropped the dirty pages), and then crashes.
	FailSync
)

func (p FaultPoint) String() string {
	switch p {
	case CrashAfterWrite:
		return "crash-after-write"
	case CrashTornWrite:
		return "torn-write"
	case FailSync:
		return "fsync-error"
	}
	return fmt.Sprintf("FaultPoint(%d)", int(p))
}

// ErrCrashed is what every segment file operation returns once Faults has
// crashed: nothing reaches the disk any more, as if the process had died.
var ErrCrashed = errors.New("wal: injected crash")

// Faults injects one storage failure into a WAL, for tests that check no
// acknowledged write is lost and no write appears half applied whatever
// point a crash hits (Options.Faults; nil in production). A Faults value
// belongs to one WAL at a time.
//
// Writes and fsyncs of segment files are counted from the first one after
// Open (segment headers included); the At-th of the kind Point names
// fails. From then on every segment file operation returns ErrCrashed, so
// the WAL is poisoned and its owner stops, and Crashed is closed.
type Faults struct {
	Point FaultPoint
	// At picks the write (CrashAfterWrite, CrashTornWrite) or the fsync
	// (FailSync) that fails, counting from 1.
	At int
	// LoseUnsynced makes a crash a machine crash: see the FaultPoints.
	LoseUnsynced bool
	// TornAt picks how many bytes of the torn write reach the file: from 1
	// to the write's length less one, by TornAt modulo (0: half of it).
	TornAt int

	once    sync.Once
	crashed chan struct{}
	mu      sync.Mutex
	writes  int
	syncs   int
	down    bool
	note    string
}

func (f *Faults) init() {
	f.once.Do(func() { f.crashed = make(chan struct{}) })
}

// Crashed is closed once the fault has been injected.
func (f *Faults) Crashed() <-chan struct{} {
	f.init()
	return f.crashed
}

// What describes the injected fault, once Crashed is closed.
func (f *Faults) What() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.note
}

// crash marks the WAL dead; f.mu is held.
func (f *Faults) crash(note string) {
	f.down = true
	f.note = note
	close(f.crashed)
}

// faultFile is a segment file under Faults. synced is the file's length
// at its last successful fsync (what a machine crash keeps).
type faultFile struct {
	f      *os.File
	faults *Faults
	synced int64
	// dirtyFrom is the lowest offset written since the last fsync (-1:
	// none). Inside the fsynced length, such bytes were zeros written
	// ahead (Options.ZeroAhead) when that fsync ran.
	dirtyFrom int64
}

func (w *WAL) wrap(f *os.File) segmentFile {
	if w.faults == nil {
		return f
	}
	w.faults.init()
	fi, err := f.Stat()
	var size int64
	if err == nil {
		size = fi.Size()
	}
	return &faultFile{f: f, faults: w.faults, synced: size, dirtyFrom: -1}
}

// loseUnsynced models a machine crash: every byte written at from or
// later since the last fsync goes back to what that fsync left there,
// zeros inside the fsynced length and nothing beyond it.
func (ff *faultFile) loseUnsynced(from int64) {
	if from < ff.synced {
		_ = WriteZeros(ff.f, from, ff.synced)
	}
	_ = ff.f.Truncate(ff.synced)
}

// unsyncedFrom is the lowest offset a machine crash loses, given a write at off.
func (ff *faultFile) unsyncedFrom(off int64) int64 {
	if ff.dirtyFrom >= 0 && ff.dirtyFrom < off {
		return ff.dirtyFrom
	}
	return off
}

func (ff *faultFile) WriteAt(p []byte, off int64) (int, error) {
	fs := ff.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.down {
		return 0, ErrCrashed
	}
	fs.writes++
	if fs.writes != fs.At || (fs.Point != CrashAfterWrite && fs.Point != CrashTornWrite) {
		n, err := ff.f.WriteAt(p, off)
		if n > 0 {
			ff.dirtyFrom = ff.unsyncedFrom(off)
		}
		return n, err
	}
	if fs.Point == CrashAfterWrite {
		n, err := ff.f.WriteAt(p, off)
		if err != nil {
			return n, err
		}
		note := fmt.Sprintf("%s: write %d (%d bytes at %s:%d) reached the file, crashed before its fsync", fs.Point, fs.At, len(p), ff.f.Name(), off)
		if fs.LoseUnsynced {
			from := ff.unsyncedFrom(off)
			ff.loseUnsynced(from)
			note += fmt.Sprintf("; machine crash: bytes from offset %d lost, the file back to its last fsynced length %d", from, ff.synced)
		}
		fs.crash(note)
		return n, ErrCrashed
	}
	k := len(p) / 2
	if fs.TornAt > 0 && len(p) > 1 {
		k = 1 + fs.TornAt%(len(p)-1) // never all of it
	}
	if fs.LoseUnsynced {
		// What came between the last fsync and this write is lost; the
		// piece lands right after the last durable byte.
		from := ff.unsyncedFrom(off)
		ff.loseUnsynced(from)
		off = min(from, ff.synced)
	}
	n, _ := ff.f.WriteAt(p[:k], off)
	fs.crash(fmt.Sprintf("%s: write %d reached %s only in part: %d of %d bytes at offset %d", fs.Point, fs.At, ff.f.Name(), n, len(p), off))
	return n, ErrCrashed
}

func (ff *faultFile) Sync() error {
	fs := ff.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.down {
		return ErrCrashed
	}
	fs.syncs++
	if fs.Point == FailSync && fs.syncs == fs.At {
		fs.crash(fmt.Sprintf("%s: fsync %d of %s failed", fs.Point, fs.At, ff.f.Name()))
		return fmt.Errorf("%w (%w)", syscall.EIO, ErrCrashed)
	}
	if err := ff.f.Sync(); err != nil {
		return err
	}
	if fi, err := ff.f.Stat(); err == nil {
		ff.synced = fi.Size()
	}
	ff.dirtyFrom = -1
	return nil
}

// zeroFill writes zeros ahead of the records (Options.ZeroAhead). It is not
// a write of records: Faults.At does not count it.
func (ff *faultFile) zeroFill(from, to int64) error {
	fs := ff.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.down {
		return ErrCrashed
	}
	return WriteZeros(ff.f, from, to)
}

func (ff *faultFile) Truncate(size int64) error {
	fs := ff.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.down {
		return ErrCrashed
	}
	if err := ff.f.Truncate(size); err != nil {
		return err
	}
	ff.synced = min(ff.synced, size)
	return nil
}

func (ff *faultFile) Close() error { return ff.f.Close() }
func (ff *faultFile) Name() string { return ff.f.Name() }

package snap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const (
	magic       = "KVDBSNP1"
	headerFixed = len(magic) + 4 + 4
	trailerSize = 8 + 4
	// maxMetaSize bounds the metadata allocation when reading a damaged header.
	maxMetaSize = 64 << 20
	snapExt     = ".snap"
	tmpExt      = ".snap.tmp"
	recvExt     = ".snap.recv"
	bufSize     = 256 << 10
)

var (
	// ErrNoSnapshot is returned when no (matching) valid snapshot file exists.
	ErrNoSnapshot = errors.New("snap: no snapshot")
	// ErrCorrupt is wrapped by every error about damaged file contents.
	ErrCorrupt = errors.New("snap: corrupt")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshotter manages the snapshot files of one directory.
type Snapshotter struct {
	dir string

	mu       sync.Mutex
	inFlight map[string]struct{} // temp files of running Saves, spared by Purge
}

// New returns a Snapshotter for dir, creating dir if missing.
func New(dir string) (*Snapshotter, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("snap: create dir: %w", err)
	}
	return &Snapshotter{dir: dir, inFlight: make(map[string]struct{})}, nil
}

func fileName(term, index uint64) string { return fmt.Sprintf("%016x-%016x%s", term, index, snapExt) }

type fileRef struct {
	name        string
	term, index uint64
}

func parseName(name string) (fileRef, bool) {
	if len(name) != 16+1+16+len(snapExt) || name[16] != '-' || !strings.HasSuffix(name, snapExt) {
		return fileRef{}, false
	}
	term, err1 := strconv.ParseUint(name[:16], 16, 64)
	index, err2 := strconv.ParseUint(name[17:33], 16, 64)
	if err1 != nil || err2 != nil {
		return fileRef{}, false
	}
	return fileRef{name: name, term: term, index: index}, true
}

// list returns the snapshot files, newest (highest index, then term) first.
func (s *Snapshotter) list() ([]fileRef, []string, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	var refs []fileRef
	var tmps []string
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		if r, ok := parseName(de.Name()); ok {
			refs = append(refs, r)
		} else if strings.HasSuffix(de.Name(), tmpExt) {
			tmps = append(tmps, de.Name())
		}
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].index != refs[j].index {
			return refs[i].index > refs[j].index
		}
		return refs[i].term > refs[j].term
	})
	return refs, tmps, nil
}

// countingWriter feeds the body checksum and length while streaming.
type countingWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc.Write(p[:n])
	c.n += uint64(n)
	return n, err
}

// Save writes a snapshot file, streaming the body from body. The file only
// becomes visible (under its final name) once it is complete and durable.
func (s *Snapshotter) Save(meta *raftpb.SnapshotMetadata, body func(w io.Writer) error) error {
	return s.save(meta, body, snapExt)
}

// SaveReceived is Save for a snapshot received from the leader: the
// complete, durable file is named "….snap.recv" and only becomes a
// snapshot once Install renames it, which the caller does after its log
// durably records the snapshot. Until then a crash leaves a file Latest
// does not count, so a snapshot file never claims an index the log on disk
// does not reach.
func (s *Snapshotter) SaveReceived(meta *raftpb.SnapshotMetadata, body func(w io.Writer) error) error {
	return s.save(meta, body, recvExt)
}

// Install publishes the received snapshot at index (see SaveReceived). It
// does nothing if none is waiting and a snapshot at index exists.
func (s *Snapshotter) Install(index uint64) error {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	found := ""
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), recvExt)
		if !ok {
			continue
		}
		if r, ok := parseName(name + snapExt); ok && r.index == index && name > found {
			found = name
		}
	}
	if found == "" {
		rc, _, err := s.Open(index)
		if err != nil {
			return fmt.Errorf("snap: install snapshot at index %d: %w", index, err)
		}
		return rc.Close()
	}
	if err := os.Rename(filepath.Join(s.dir, found+recvExt), filepath.Join(s.dir, found+snapExt)); err != nil {
		return fmt.Errorf("snap: install: %w", err)
	}
	return syncDir(s.dir)
}

// DiscardReceived removes received snapshots never installed. Call it only
// while no receive or Install can run (at start-up).
func (s *Snapshotter) DiscardReceived() error {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("snap: list %s: %w", s.dir, err)
	}
	var errs []error
	for _, de := range des {
		if strings.HasSuffix(de.Name(), recvExt) {
			if err := os.Remove(filepath.Join(s.dir, de.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("snap: discard: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// Path is the file a snapshot at (term, index) is stored in.
func (s *Snapshotter) Path(term, index uint64) string {
	return filepath.Join(s.dir, fileName(term, index))
}

func (s *Snapshotter) save(meta *raftpb.SnapshotMetadata, body func(w io.Writer) error, ext string) (err error) {
	if meta == nil {
		return errors.New("snap: nil metadata")
	}
	mb, err := proto.Marshal(meta)
	if err != nil {
		return fmt.Errorf("snap: marshal metadata: %w", err)
	}
	if len(mb) > maxMetaSize {
		return fmt.Errorf("snap: metadata of %d bytes exceeds %d", len(mb), maxMetaSize)
	}
	// Creation and registration happen under one lock so that a concurrent
	// Purge can never see the temp file without also seeing it in flight.
	s.mu.Lock()
	f, err := os.CreateTemp(s.dir, "*"+tmpExt)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("snap: create temp file: %w", err)
	}
	tmpName := filepath.Base(f.Name())
	s.inFlight[tmpName] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inFlight, tmpName)
		s.mu.Unlock()
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	bw := bufio.NewWriterSize(f, bufSize)
	var hdr [headerFixed]byte
	copy(hdr[:], magic)
	binary.LittleEndian.PutUint32(hdr[8:12], uint32(len(mb)))
	crc := crc32.New(crcTable)
	crc.Write(hdr[8:12])
	crc.Write(mb)
	binary.LittleEndian.PutUint32(hdr[12:16], crc.Sum32())
	if _, err := bw.Write(hdr[:]); err != nil {
		return fmt.Errorf("snap: write header: %w", err)
	}
	if _, err := bw.Write(mb); err != nil {
		return fmt.Errorf("snap: write header: %w", err)
	}
	cw := &countingWriter{w: bw, crc: crc32.New(crcTable)}
	if err := body(cw); err != nil {
		return fmt.Errorf("snap: write body: %w", err)
	}
	var tr [trailerSize]byte
	binary.LittleEndian.PutUint64(tr[0:8], cw.n)
	binary.LittleEndian.PutUint32(tr[8:12], cw.crc.Sum32())
	if _, err := bw.Write(tr[:]); err != nil {
		return fmt.Errorf("snap: write trailer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("snap: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("snap: fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snap: close: %w", err)
	}
	final := filepath.Join(s.dir, strings.TrimSuffix(fileName(meta.GetTerm(), meta.GetIndex()), snapExt)+ext)
	if err := os.Rename(f.Name(), final); err != nil {
		return fmt.Errorf("snap: publish: %w", err)
	}
	return syncDir(s.dir)
}

// header is a validated file header.
type header struct {
	meta    *raftpb.SnapshotMetadata
	bodyOff int64
	bodyLen int64
}

// readHeader validates magic, metadata checksum, the name/metadata match and
// the trailer's body length against the file size.
func readHeader(f *os.File, ref fileRef) (header, error) {
	path := f.Name()
	fi, err := f.Stat()
	if err != nil {
		return header{}, fmt.Errorf("snap: stat %s: %w", path, err)
	}
	size := fi.Size()
	corrupt := func(reason string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(reason, args...))
	}
	if size < int64(headerFixed+trailerSize) {
		return header{}, corrupt("file of %d bytes is too short", size)
	}
	var hdr [headerFixed]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return header{}, fmt.Errorf("snap: read %s: %w", path, err)
	}
	if string(hdr[:8]) != magic {
		return header{}, corrupt("bad magic")
	}
	m := binary.LittleEndian.Uint32(hdr[8:12])
	if m > maxMetaSize || int64(headerFixed)+int64(m)+trailerSize > size {
		return header{}, corrupt("metadata length %d does not fit the file", m)
	}
	mb := make([]byte, m)
	if _, err := f.ReadAt(mb, int64(headerFixed)); err != nil {
		return header{}, fmt.Errorf("snap: read %s: %w", path, err)
	}
	crc := crc32.New(crcTable)
	crc.Write(hdr[8:12])
	crc.Write(mb)
	if crc.Sum32() != binary.LittleEndian.Uint32(hdr[12:16]) {
		return header{}, corrupt("metadata checksum mismatch")
	}
	meta := &raftpb.SnapshotMetadata{}
	if err := proto.Unmarshal(mb, meta); err != nil {
		return header{}, corrupt("undecodable metadata: %v", err)
	}
	if meta.GetTerm() != ref.term || meta.GetIndex() != ref.index {
		return header{}, corrupt("metadata (term %d, index %d) does not match the file name", meta.GetTerm(), meta.GetIndex())
	}
	var tr [8]byte
	if _, err := f.ReadAt(tr[:], size-trailerSize); err != nil {
		return header{}, fmt.Errorf("snap: read %s: %w", path, err)
	}
	bodyOff := int64(headerFixed) + int64(m)
	bodyLen := size - trailerSize - bodyOff
	if got := binary.LittleEndian.Uint64(tr[:]); got != uint64(bodyLen) {
		return header{}, corrupt("trailer records a body of %d bytes, file holds %d", got, bodyLen)
	}
	return header{meta: meta, bodyOff: bodyOff, bodyLen: bodyLen}, nil
}

func (s *Snapshotter) openValid(ref fileRef) (*os.File, header, error) {
	f, err := os.Open(filepath.Join(s.dir, ref.name))
	if err != nil {
		return nil, header{}, fmt.Errorf("snap: open: %w", err)
	}
	h, err := readHeader(f, ref)
	if err != nil {
		f.Close()
		return nil, header{}, err
	}
	return f, h, nil
}

// Latest returns the metadata of the newest snapshot whose header is valid.
// Damaged files are skipped so that an older good snapshot can still be used.
func (s *Snapshotter) Latest() (*raftpb.SnapshotMetadata, error) {
	refs, _, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, ref := range refs {
		f, h, err := s.openValid(ref)
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				continue
			}
			return nil, err
		}
		f.Close()
		return h.meta, nil
	}
	return nil, ErrNoSnapshot
}

// Open returns a streaming reader over the body of the snapshot at index
// (the highest term with a valid header if several exist). Once the body is
// consumed the reader returns io.EOF only if the trailer checksum matches,
// and an error wrapping ErrCorrupt otherwise.
func (s *Snapshotter) Open(index uint64) (io.ReadCloser, *raftpb.SnapshotMetadata, error) {
	refs, _, err := s.list()
	if err != nil {
		return nil, nil, err
	}
	var firstErr error
	for _, ref := range refs {
		if ref.index != index {
			continue
		}
		f, h, err := s.openValid(ref)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		var tr [4]byte
		if _, err := f.ReadAt(tr[:], h.bodyOff+h.bodyLen+8); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("snap: read trailer: %w", err)
		}
		if _, err := f.Seek(h.bodyOff, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("snap: seek: %w", err)
		}
		return &bodyReader{
			f:    f,
			r:    io.LimitReader(bufio.NewReaderSize(f, bufSize), h.bodyLen),
			crc:  crc32.New(crcTable),
			want: binary.LittleEndian.Uint32(tr[:]),
			left: h.bodyLen,
		}, h.meta, nil
	}
	if firstErr != nil {
		return nil, nil, firstErr
	}
	return nil, nil, fmt.Errorf("%w at index %d", ErrNoSnapshot, index)
}

type bodyReader struct {
	f    *os.File
	r    io.Reader
	crc  hash.Hash32
	want uint32
	left int64
	err  error // sticky terminal result
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	b.crc.Write(p[:n])
	b.left -= int64(n)
	if err == io.EOF {
		switch {
		case b.left != 0:
			// The file shrank after the header was validated.
			err = fmt.Errorf("%w: %s: body ends %d bytes early", ErrCorrupt, b.f.Name(), b.left)
		case b.crc.Sum32() != b.want:
			err = fmt.Errorf("%w: %s: body checksum mismatch", ErrCorrupt, b.f.Name())
		}
		b.err = err
	} else if err != nil {
		b.err = fmt.Errorf("snap: read body: %w", err)
		err = b.err
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.f.Close() }

// Purge keeps the newest keep snapshots with a valid header and deletes all
// older snapshot files, plus temp files left by crashed Saves. Damaged files
// newer than the cut-off are left alone; counting them would risk deleting
// the last good snapshot.
func (s *Snapshotter) Purge(keep int) error {
	if keep < 1 {
		return fmt.Errorf("snap: purge must keep at least one snapshot, got %d", keep)
	}
	refs, tmps, err := s.list()
	if err != nil {
		return err
	}
	var errs []error
	valid := 0
	for _, ref := range refs {
		if valid >= keep {
			if err := os.Remove(filepath.Join(s.dir, ref.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("snap: purge: %w", err))
			}
			continue
		}
		f, _, err := s.openValid(ref)
		if err == nil {
			f.Close()
			valid++
		} else if !errors.Is(err, ErrCorrupt) {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	for _, name := range tmps {
		if _, busy := s.inFlight[name]; busy {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("snap: purge: %w", err))
		}
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("snap: open dir for sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snap: sync dir %s: %w", dir, err)
	}
	return nil
}

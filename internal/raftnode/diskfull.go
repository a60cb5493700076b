package raftnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

// reserveName is the file that holds DiskReserve bytes of the data dir's
// file system for the moment it fills up (see doc.go, "A full disk").
const reserveName = "space.reserve"

// diskFullRetry is how often a node whose disk is full retries the write
// that failed and checks whether there is room to resume writes.
const diskFullRetry = time.Second

// ensureReserve makes the reserve file DiskReserve bytes long. It is
// written to a temp file first, so a full disk leaves no partial reserve.
func (n *Node) ensureReserve() error {
	size := n.cfg.DiskReserve
	path := filepath.Join(n.cfg.DataDir, reserveName)
	if size <= 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("raftnode: remove disk reserve: %w", err)
		}
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() == size {
		n.reserveHeld = true
		return nil
	}
	tmp := path + ".tmp"
	err := writeZeros(tmp, size)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDirOf(path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("raftnode: create disk reserve of %d bytes: %w", size, err)
	}
	n.reserveHeld = true
	return nil
}

func writeZeros(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = wal.WriteZeros(f, 0, size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDirOf(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// freeBytes is the space unprivileged writers may still use on the file
// system holding dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("raftnode: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// DiskFull returns the error writes get while the data dir's file system is
// full, or nil. Safe to call from any goroutine.
func (n *Node) DiskFull() error {
	if e := n.diskFullErr.Load(); e != nil {
		return e
	}
	return nil
}

// enterDiskFull refuses writes from now on and frees the reserve so that
// what is already in flight can still be written. It reports whether the
// reserve was freed (a retry may now succeed). WAL goroutine only.
func (n *Node) enterDiskFull(cause error) bool {
	if n.diskFullErr.Load() == nil {
		n.diskFullErr.Store(&DiskFullError{Dir: n.cfg.DataDir, Err: cause})
		n.log.Error("data dir is out of space: writes are refused until space is freed; reads are still served",
			"data_dir", n.cfg.DataDir, "err", cause)
	}
	if !n.reserveHeld {
		return false
	}
	n.reserveHeld = false
	if err := os.Remove(filepath.Join(n.cfg.DataDir, reserveName)); err != nil {
		n.log.Warn("freeing the disk reserve", "err", err)
		return false
	}
	n.log.Warn("freed the disk reserve to finish the writes in flight", "bytes", n.cfg.DiskReserve)
	return true
}

// retryDiskFull runs on the WAL goroutine every diskFullRetry while the
// disk is full: it writes the stalled group, and once there is room for the
// reserve again (plus as much headroom) it takes the reserve back and
// resumes writes.
func (n *Node) retryDiskFull() error {
	if g := n.stalled; g != nil {
		if err := n.writeWAL(g.needSync); err != nil {
			if IsNoSpace(err) {
				return nil
			}
			return err
		}
		n.stalled = nil
		n.walStalled.Store(false)
		if err := n.finishGroup(g); err != nil {
			return err
		}
		// What queued up behind it.
		select {
		case n.walq.wake <- struct{}{}:
		default:
		}
	} else if err := n.wal.Flush(); err != nil {
		if IsNoSpace(err) {
			return nil
		}
		return fmt.Errorf("raftnode: WAL write: %w", err)
	}
	if n.diskFullErr.Load() == nil {
		return nil
	}
	free, err := freeBytes(n.cfg.DataDir)
	if err != nil {
		return nil // try again later
	}
	if free < 2*max(n.cfg.DiskReserve, 1<<20) {
		return nil
	}
	if err := n.ensureReserve(); err != nil {
		n.log.Warn("cannot take the disk reserve back yet", "err", err)
		return nil
	}
	n.diskFullErr.Store(nil)
	n.log.Info("data dir has space again: writes resume", "data_dir", n.cfg.DataDir, "free_bytes", free)
	return nil
}

// dropWhileStalled is true for the peer messages a stalled node cannot
// use: they would only grow raft's unstable log in memory. Dropping a
// message is always safe in raft; the leader resends.
func dropWhileStalled(m *raftpb.Message) bool {
	switch m.GetType() {
	case raftpb.MessageType_MsgApp, raftpb.MessageType_MsgSnap, raftpb.MessageType_MsgProp:
		return true
	}
	return false
}

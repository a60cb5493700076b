package core

import (
	"context"
	"errors"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/watch"
)

// WatchRequest opens a watcher on a stream: Key alone, [Key, End), or
// Key's prefix (Prefix; with an empty Key, every key). The other fields are
// watch.CreateRequest's.
type WatchRequest struct {
	Key, End       []byte
	Prefix         bool
	StartRevision  int64
	WatchID        int64
	PrevKV         bool
	NoPut          bool
	NoDelete       bool
	ProgressNotify bool
	Fragment       bool
}

// Watches is the node's watch hub (its history and watchers).
func (c *Core) Watches() *watch.Hub { return c.watches }

// OpenWatchStream starts a watch stream whose responses go through send
// (called from the stream's sender only). It fails with ErrUnauthenticated
// when auth is on and ctx carries no user, and with ResourceExhausted past
// MaxWatchStreams. The caller runs the stream (Run) and closes it.
func (c *Core) OpenWatchStream(ctx context.Context, send func(*watch.Response) error) (*watch.Stream, error) {
	if _, err := c.authenticated(ctx); err != nil {
		return nil, err
	}
	st, ok := c.watches.NewStreamBounded(c.limits.MaxWatchStreams, watch.StreamConfig{
		MaxWatchers:      c.limits.MaxWatchesPerStream,
		ProgressInterval: c.cfg.WatchProgressInterval,
	}, send)
	if !ok {
		return nil, Errorf(ResourceExhausted, "too many watch streams on this node (the max-watch-streams limit is %d)", c.limits.MaxWatchStreams)
	}
	return st, nil
}

// Watch validates r, checks the caller may read every key it watches, and
// opens the watcher on st. The stream answers with Created (and, for a
// start revision older than the history, a cancellation naming the oldest
// revision available).
func (c *Core) Watch(ctx context.Context, st *watch.Stream, r WatchRequest) (int64, error) {
	key, end, err := c.rangeBounds(r.Key, r.End, r.Prefix)
	if err != nil {
		return 0, err
	}
	if r.StartRevision < 0 {
		return 0, invalidf("start_revision must not be negative")
	}
	if r.WatchID < 0 {
		return 0, invalidf("watch_id must not be negative")
	}
	if err := c.authorize(ctx, auth.Read, key, end); err != nil {
		return 0, err
	}
	id, err := st.Create(watch.CreateRequest{
		Key: key, End: end, StartRevision: r.StartRevision, WatchID: r.WatchID,
		PrevKV: r.PrevKV, NoPut: r.NoPut, NoDelete: r.NoDelete,
		ProgressNotify: r.ProgressNotify, Fragment: r.Fragment,
	})
	switch {
	case errors.Is(err, watch.ErrTooManyWatch):
		return 0, Errorf(ResourceExhausted, "%v (the max-watches-per-stream limit)", err)
	case errors.Is(err, watch.ErrWatchIDInUse):
		return 0, invalidf("%v", err)
	case err != nil:
		return 0, Errorf(Canceled, "%v", err)
	}
	return id, nil
}

package service

import (
	"context"
	"errors"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/watch"
)

// watchService implements kvdbv1.WatchServiceServer: it reads the client's
// requests and hands them to core; the stream's sender (package watch)
// writes the responses.
type watchService struct {
	kvdbv1.UnimplementedWatchServiceServer
	s *Server
}

func (w *watchService) Watch(ss kvdbv1.WatchService_WatchServer) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	st, err := w.s.core.OpenWatchStream(ctx, func(r *watch.Response) error {
		return ss.Send(w.s.watchResponse(r))
	})
	if err != nil {
		return toStatus(err)
	}
	defer st.Close()
	// Two goroutines per stream: this one reads the client's requests,
	// the sender writes the responses.
	sendErr := make(chan error, 1)
	go func() {
		err := st.Run(ctx)
		cancel()
		sendErr <- err
	}()
	err = w.recvLoop(ctx, ss, st)
	if errors.Is(err, watch.ErrStreamClosed) || (errors.Is(err, context.Canceled) && ss.Context().Err() == nil) {
		// The sender stopped while the reader waited for it: its error
		// says why.
		err = nil
	}
	if errors.Is(err, io.EOF) {
		// The client closed its side (grpcurl -d does after its
		// requests): its watchers go on until it cancels the call or
		// the node stops.
		select {
		case <-ctx.Done():
		case <-w.s.stopC:
			cancel()
			<-sendErr
			return toStatus(core.ErrShuttingDown)
		}
		err = nil
	}
	cancel()
	serr := <-sendErr
	switch {
	case err != nil && ss.Context().Err() == nil:
		return toStatus(err)
	case serr != nil && !errors.Is(serr, context.Canceled):
		return toStatus(serr)
	}
	return nil
}

// recvLoop applies the client's requests until the stream ends. A create
// that fails validation, the permission check or a limit is refused alone
// (watch.Stream.Refuse), its reason led by the error's code name, e.g.
// "PermissionDenied: ...": the stream and its other watchers go on, as in
// etcd. While the stream's answers wait for a client that does not read
// them, it reads no further request (watch.Stream.WaitControlRoom): the
// client's sends then wait on HTTP/2 flow control.
func (w *watchService) recvLoop(ctx context.Context, ss kvdbv1.WatchService_WatchServer, st *watch.Stream) error {
	for {
		if err := st.WaitControlRoom(ctx); err != nil {
			return err
		}
		req, err := ss.Recv()
		if err != nil {
			return err
		}
		switch r := req.GetRequest().(type) {
		case *kvdbv1.WatchRequest_CreateRequest:
			c := r.CreateRequest
			wr := core.WatchRequest{
				Key: c.GetKey(), End: c.GetRangeEnd(), Prefix: c.GetPrefix(),
				StartRevision: c.GetStartRevision(), WatchID: c.GetWatchId(),
				PrevKV: c.GetPrevKv(), ProgressNotify: c.GetProgressNotify(), Fragment: c.GetFragment(),
			}
			var err error
			if len(c.GetFilters()) > 2 {
				err = core.Errorf(core.InvalidArgument, "filters holds %d entries, at most 2 (NOPUT, NODELETE)", len(c.GetFilters()))
			}
			for _, f := range c.GetFilters() {
				switch f {
				case kvdbv1.WatchCreateRequest_FILTER_TYPE_NOPUT:
					wr.NoPut = true
				case kvdbv1.WatchCreateRequest_FILTER_TYPE_NODELETE:
					wr.NoDelete = true
				}
			}
			if err == nil {
				_, err = w.s.core.Watch(ctx, st, wr)
			}
			if err != nil {
				if core.CodeOf(err) == core.Canceled || ctx.Err() != nil {
					return err // the stream is closing
				}
				id := c.GetWatchId()
				if id <= 0 {
					id = -1
				}
				sts := status.Convert(toStatus(err))
				st.Refuse(id, sts.Code().String()+": "+sts.Message())
			}
		case *kvdbv1.WatchRequest_CancelRequest:
			st.Cancel(r.CancelRequest.GetWatchId())
		case *kvdbv1.WatchRequest_ProgressRequest:
			st.RequestProgress()
		default:
			return core.Errorf(core.InvalidArgument, "a watch request must hold a create, cancel or progress request")
		}
	}
}

func (s *Server) watchResponse(r *watch.Response) *kvdbv1.WatchResponse {
	out := &kvdbv1.WatchResponse{
		Header:          s.header(r.Revision),
		WatchId:         r.WatchID,
		Created:         r.Created,
		Canceled:        r.Canceled,
		CompactRevision: r.CompactRevision,
		CancelReason:    r.CancelReason,
		Fragment:        r.Fragment,
	}
	if len(r.Events) > 0 {
		out.Events = make([]*kvdbv1.Event, len(r.Events))
		for i := range r.Events {
			out.Events[i] = protoEvent(&r.Events[i], r.PrevKV)
		}
	}
	return out
}

func protoEvent(ev *engine.Event, prevKV bool) *kvdbv1.Event {
	e := &kvdbv1.Event{Type: kvdbv1.Event_EVENT_TYPE_PUT, Kv: toProtoKV(ev.KV(), false)}
	if ev.Type() == engine.EventDelete {
		e.Type = kvdbv1.Event_EVENT_TYPE_DELETE
		e.Kv.Value = nil
	}
	if prevKV {
		if p, ok := ev.PrevKV(); ok {
			e.PrevKv = toProtoKV(p, false)
		}
	}
	return e
}

// watchMetrics are the kvdb_watch_* metrics, read from the hub at scrape
// time (docs/monitoring.md).
func (s *Server) watchMetrics() []prometheus.Collector {
	hub := s.core.Watches()
	stat := func(f func(watch.Stats) int64) func() float64 {
		return func() float64 { return float64(f(hub.Stats())) }
	}
	gauge := func(name, help string, f func(watch.Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, stat(f))
	}
	counter := func(name, help string, f func(watch.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, stat(f))
	}
	return []prometheus.Collector{
		gauge("kvdb_watch_watchers", "Watchers open on this node.", func(st watch.Stats) int64 { return st.Watchers }),
		gauge("kvdb_watch_streams", "Watch streams open on this node.", func(st watch.Stats) int64 { return st.Streams }),
		counter("kvdb_watch_events_sent_total", "Events sent to watchers.", func(st watch.Stats) int64 { return st.EventsSent }),
		gauge("kvdb_watch_control_queued", "Created and canceled answers waiting for their streams' senders.",
			func(st watch.Stats) int64 { return st.ControlQueued }),
		gauge("kvdb_watch_buffered_bytes", "Bytes of events buffered for watchers, waiting for their senders.",
			func(st watch.Stats) int64 { return st.BufferedBytes }),
		counter("kvdb_watch_lagged_total", "Times a watcher's buffer overflowed and it switched to catching up from the history.",
			func(st watch.Stats) int64 { return st.Lagged }),
		counter("kvdb_watch_slow_canceled_total", "Watchers canceled because they fell behind the history window.",
			func(st watch.Stats) int64 { return st.CanceledSlow }),
		gauge("kvdb_watch_history_oldest_revision", "Oldest revision a watch can start from.",
			func(st watch.Stats) int64 { return st.OldestRevision }),
		gauge("kvdb_watch_history_revisions", "Revisions held in the watch history window.",
			func(st watch.Stats) int64 { return st.HistoryRevisions }),
		gauge("kvdb_watch_history_bytes", "Bytes the watch history window keeps alive (events and the entries they hold).",
			func(st watch.Stats) int64 { return st.HistoryBytes }),
	}
}

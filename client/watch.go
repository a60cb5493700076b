package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// EventType is the kind of a watch event.
type EventType int

// The event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change of one key. For a delete, KV holds the key and
// ModRevision (the deleting revision) only.
type Event struct {
	Type EventType
	KV   KeyValue
	// PrevKV is the key before the change, with WithPrevKV and when it
	// existed.
	PrevKV *KeyValue
}

// WatchResponse is what a watch channel carries: the events of one or more
// whole revisions, in order (Revision is the last one's), a progress
// notification (no events; every change up to Revision has been
// delivered), or a final error (Err) after which the channel is closed.
type WatchResponse struct {
	Events   []Event
	Revision int64
	// Err ends the watch: ErrCompacted (errors.Is) when the revision to
	// resume from has left the server's history, or the error that made
	// it give up (a refused watch, a closed Client).
	Err error
	// CompactRevision is, with ErrCompacted, the oldest revision the
	// server holds: read the state (Range reports its revision) and watch
	// from that revision + 1.
	CompactRevision int64
}

// ErrCompacted is matched by errors.Is when a watch's next revision is
// older than the server's history window.
var ErrCompacted = errors.New("kvdb: watch revision compacted")

// WatchOption tunes Watch.
type WatchOption func(*kvdbv1.WatchCreateRequest)

// WithRange watches [key, end) (end "\x00": every key >= key).
func WithRange(end []byte) WatchOption {
	return func(r *kvdbv1.WatchCreateRequest) { r.RangeEnd = end }
}

// WithPrefix watches every key starting with key.
func WithPrefix() WatchOption { return func(r *kvdbv1.WatchCreateRequest) { r.Prefix = true } }

// WithRev starts at revision rev (0: the next one).
func WithRev(rev int64) WatchOption {
	return func(r *kvdbv1.WatchCreateRequest) { r.StartRevision = rev }
}

// WithPrevKV adds each key's previous state to its events.
func WithPrevKV() WatchOption { return func(r *kvdbv1.WatchCreateRequest) { r.PrevKv = true } }

// WithProgressNotify asks for progress notifications while idle.
func WithProgressNotify() WatchOption {
	return func(r *kvdbv1.WatchCreateRequest) { r.ProgressNotify = true }
}

// WithFilterPut leaves out put events.
func WithFilterPut() WatchOption {
	return func(r *kvdbv1.WatchCreateRequest) {
		r.Filters = append(r.Filters, kvdbv1.WatchCreateRequest_FILTER_TYPE_NOPUT)
	}
}

// WithFilterDelete leaves out delete events.
func WithFilterDelete() WatchOption {
	return func(r *kvdbv1.WatchCreateRequest) {
		r.Filters = append(r.Filters, kvdbv1.WatchCreateRequest_FILTER_TYPE_NODELETE)
	}
}

// Watch streams the changes of key (or of the range or prefix the options
// name) until ctx ends, then closes the channel. Watches go over gRPC
// whatever the Client's protocol (a node's port serves both), on the first
// endpoint of Options.Endpoints (any node serves watches). When the
// node it watches on fails, it resumes on the next endpoint from the
// revision after the last one delivered, so the channel sees every change
// once, in order. An error it cannot recover from (ErrCompacted, a refused
// watch) is delivered as the channel's last response.
func (c *Client) Watch(ctx context.Context, key []byte, opts ...WatchOption) <-chan WatchResponse {
	req := &kvdbv1.WatchCreateRequest{Key: key}
	for _, o := range opts {
		o(req)
	}
	out := make(chan WatchResponse, 16)
	go c.watchLoop(ctx, req, out)
	return out
}

func (c *Client) watchLoop(ctx context.Context, req *kvdbv1.WatchCreateRequest, out chan<- WatchResponse) {
	defer close(out)
	// Any node serves watches: start on the first endpoint listed (not
	// necessarily the leader), so a client can spread its watches.
	eps := c.opts.Endpoints
	start := 0
	next := req.GetStartRevision()
	backoff := c.opts.BackoffBase
	// compacted counts the endpoints in a row that answered that next has
	// left their history. Each node keeps its own window (one restarted
	// from a snapshot holds less), so the others are asked before giving
	// up.
	compacted := 0
	for attempt := 0; ; attempt++ {
		ep := eps[(start+attempt)%len(eps)]
		r := proto(req)
		r.StartRevision = next
		before := next
		progressed, err := c.watchOn(ctx, ep, r, &next, out)
		if ctx.Err() != nil {
			return
		}
		if next != before {
			compacted = 0
		}
		if errors.Is(err, ErrCompacted) {
			if compacted++; compacted < len(eps) {
				continue
			}
		}
		if err != nil && permanent(err) {
			select {
			case out <- WatchResponse{Err: err, CompactRevision: compactRevOf(err)}:
			case <-ctx.Done():
			}
			return
		}
		if progressed {
			backoff = c.opts.BackoffBase
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, c.opts.BackoffMax)
	}
}

func proto(r *kvdbv1.WatchCreateRequest) *kvdbv1.WatchCreateRequest {
	return &kvdbv1.WatchCreateRequest{Key: r.Key, RangeEnd: r.RangeEnd, Prefix: r.Prefix, StartRevision: r.StartRevision,
		PrevKv: r.PrevKv, ProgressNotify: r.ProgressNotify, Filters: r.Filters, Fragment: true}
}

// refusedWatch is the error of a create the node refused: its reason is
// "Code: message" with a gRPC code name; an unknown name is Unknown.
func refusedWatch(reason string) error {
	name, msg, _ := strings.Cut(reason, ": ")
	code := codes.Unknown
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			code = c
		}
	}
	if code == codes.Unknown {
		msg = reason
	}
	return &Error{Code: code, Message: "watch refused: " + msg}
}

// compactedError carries the oldest revision a server holds.
type compactedError struct {
	rev    int64
	reason string
}

func (e *compactedError) Error() string { return "kvdb: " + e.reason }
func (e *compactedError) Is(t error) bool {
	return t == ErrCompacted
}

func compactRevOf(err error) int64 {
	var ce *compactedError
	if errors.As(err, &ce) {
		return ce.rev
	}
	return 0
}

// permanent reports errors a watch does not retry on another node.
func permanent(err error) bool {
	if errors.Is(err, ErrCompacted) || errors.Is(err, ErrClosed) {
		return true
	}
	switch Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted, codes.OutOfRange:
		return true
	}
	return false
}

// watchOn runs the watch on one endpoint until it fails, advancing *next
// past every revision delivered. It reports whether anything arrived.
func (c *Client) watchOn(ctx context.Context, ep string, req *kvdbv1.WatchCreateRequest, next *int64, out chan<- WatchResponse) (bool, error) {
	cc, err := c.watchConn(ep)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.dial.tokens != nil {
		tok, err := c.dial.tokens.get(sctx, cc)
		if err != nil {
			return false, err
		}
		if tok != "" {
			sctx = metadata.AppendToOutgoingContext(sctx, "token", tok)
		}
	}
	ws, err := kvdbv1.NewWatchServiceClient(cc).Watch(sctx)
	if err != nil {
		return false, grpcErr(err)
	}
	if err := ws.Send(&kvdbv1.WatchRequest{Request: &kvdbv1.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		_, err = ws.Recv()
		return false, watchErr(err)
	}
	progressed := false
	var pending []Event // a fragmented revision's events so far
	for {
		r, err := ws.Recv()
		if err != nil {
			return progressed, watchErr(err)
		}
		progressed = true
		switch {
		case r.GetCreated() && r.GetCanceled():
			// The node refused the create; the reason leads with the
			// error's code name.
			return progressed, refusedWatch(r.GetCancelReason())
		case r.GetCreated():
			// Resuming from here is gap-free: the watch covers every
			// revision after the one it was created at.
			if *next == 0 {
				*next = r.GetHeader().GetRevision() + 1
			}
			continue
		case r.GetCanceled():
			if r.GetCompactRevision() != 0 {
				return progressed, &compactedError{rev: r.GetCompactRevision(), reason: r.GetCancelReason()}
			}
			return progressed, &Error{Code: codes.Canceled, Message: "watch canceled by the server: " + r.GetCancelReason()}
		}
		for _, e := range r.GetEvents() {
			if e.GetKv().GetModRevision() < *next {
				continue // never deliver a revision twice
			}
			ev := Event{Type: EventPut, KV: fromProtoKVOwned(e.GetKv())}
			if e.GetType() == kvdbv1.Event_EVENT_TYPE_DELETE {
				ev.Type = EventDelete
			}
			if p := e.GetPrevKv(); p != nil {
				kv := fromProtoKVOwned(p)
				ev.PrevKV = &kv
			}
			pending = append(pending, ev)
		}
		if r.GetFragment() {
			continue
		}
		resp := WatchResponse{Events: pending, Revision: r.GetHeader().GetRevision()}
		pending = nil
		if len(resp.Events) == 0 {
			if r.GetWatchId() == -1 || resp.Revision < *next-1 {
				continue
			}
		}
		select {
		case out <- resp:
		case <-ctx.Done():
			return progressed, ctx.Err()
		}
		if n := len(resp.Events); n > 0 {
			*next = resp.Events[n-1].KV.ModRevision + 1
		} else if resp.Revision >= *next {
			*next = resp.Revision + 1
		}
	}
}

func fromProtoKVOwned(kv *kvdbv1.KeyValue) KeyValue {
	return KeyValue{Key: kv.GetKey(), Value: kv.GetValue(), CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion()}
}

func watchErr(err error) error {
	if errors.Is(err, io.EOF) {
		return &Error{Code: codes.Unavailable, Message: "watch stream ended"}
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Canceled {
		return &Error{Code: codes.Unavailable, Message: s.Message()}
	}
	return grpcErr(err)
}

// watchConns are the gRPC connections watches use, one per endpoint,
// shared by every Watch of the Client.
type watchConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (c *Client) watchConn(ep string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	w := &c.watches
	w.mu.Lock()
	defer w.mu.Unlock()
	if cc, ok := w.conns[ep]; ok {
		return cc, nil
	}
	g, err := dialGRPC(ep, c.dial)
	if err != nil {
		return nil, err
	}
	if w.conns == nil {
		w.conns = map[string]*grpc.ClientConn{}
	}
	w.conns[ep] = g.conn
	return g.conn, nil
}

func (w *watchConns) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ep, cc := range w.conns {
		cc.Close()
		delete(w.conns, ep)
	}
}

// String is the event as kvdbctl prints it: "PUT key value" or
// "DELETE key".
func (e Event) String() string {
	if e.Type == EventDelete {
		return fmt.Sprintf("DELETE %s", e.KV.Key)
	}
	return fmt.Sprintf("PUT %s %s", e.KV.Key, e.KV.Value)
}

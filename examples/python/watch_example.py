#!/usr/bin/python3
"""Watch a prefix on KVDB from Python through the generated gRPC client.

Writes a few keys under a prefix, then watches the prefix from the
revision of the first write (so the past changes are replayed from the
node's history) and prints one line per change, "PUT key value" or
"DELETE key", until --count changes have arrived.

    make run                                   # a node on localhost:8080
    /usr/bin/python3 examples/python/watch_example.py --address localhost:8080

On a real cluster a watch can be served by any node; to resume after a
node fails, watch on another node from the last revision received + 1.
A "compacted" cancellation means that revision has left the node's
history window: read the keys (Range reports its revision) and watch from
that revision + 1.

It needs grpcio and protobuf (Debian: python3-grpcio python3-protobuf) and
the generated code in gen/python, which this script finds relative to
itself unless it is already importable.
"""

import argparse
import queue
import sys
from pathlib import Path

try:
    import kvdb.v1.watch_service_pb2  # noqa: F401  (already on sys.path?)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gen" / "python"))

import grpc

from kvdb.v1 import kv_service_pb2 as kv_pb
from kvdb.v1 import kv_service_pb2_grpc as kv_grpc
from kvdb.v1 import watch_service_pb2 as watch_pb
from kvdb.v1 import watch_service_pb2_grpc as watch_grpc

TIMEOUT = 5.0


def watch(channel, prefix, start_revision, count, timeout):
    """Yield up to count events of prefix from start_revision."""
    requests = queue.Queue()
    requests.put(watch_pb.WatchRequest(create_request=watch_pb.WatchCreateRequest(
        key=prefix, prefix=True, start_revision=start_revision, prev_kv=True)))

    def request_stream():
        # Keep the send side open while watching: the stream's requests
        # come from this queue (a cancel or progress request could follow).
        while True:
            req = requests.get()
            if req is None:
                return
            yield req

    stub = watch_grpc.WatchServiceStub(channel)
    responses = stub.Watch(request_stream(), timeout=timeout)
    seen = 0
    try:
        for resp in responses:
            if resp.created:
                continue
            if resp.canceled:
                raise RuntimeError(f"watch canceled: {resp.cancel_reason} "
                                   f"(oldest revision held: {resp.compact_revision})")
            for ev in resp.events:
                yield ev
                seen += 1
                if seen >= count:
                    return
    finally:
        requests.put(None)
        responses.cancel()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="localhost:8080", help="a node's host:port")
    parser.add_argument("--prefix", default="watch-example/", help="the prefix written and watched")
    parser.add_argument("--count", type=int, default=4, help="stop after this many changes")
    args = parser.parse_args(argv)

    with grpc.insecure_channel(args.address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        except grpc.FutureTimeoutError:
            print(f"watch_example.py: cannot reach a KVDB node at {args.address} "
                  f"within {TIMEOUT:g} s (is kvdb-server running there?)", file=sys.stderr)
            return 1
        kv = kv_grpc.KVServiceStub(channel)
        prefix = args.prefix.encode()
        first = kv.Put(kv_pb.PutRequest(key=prefix + b"a", value=b"1"), timeout=TIMEOUT)
        kv.Put(kv_pb.PutRequest(key=prefix + b"a", value=b"2"), timeout=TIMEOUT)
        kv.Put(kv_pb.PutRequest(key=prefix + b"b", value=b"3"), timeout=TIMEOUT)
        kv.Delete(kv_pb.DeleteRequest(key=prefix, prefix=True), timeout=TIMEOUT)
        for ev in watch(channel, prefix, first.header.revision, args.count, timeout=30):
            key = ev.kv.key.decode(errors="replace")
            if ev.type == watch_pb.Event.EVENT_TYPE_DELETE:
                print(f"DELETE {key}")
            else:
                print(f"PUT {key} {ev.kv.value.decode(errors='replace')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Leases and TTLs from Python through the generated gRPC client.

Registers a service instance under a lease kept alive by a background
thread (the etcd pattern for service discovery and locks), writes a key
that expires on its own, shows both with their remaining time, then stops
keeping the lease alive and watches its key disappear.

    make run                                   # a node on localhost:8080
    /usr/bin/python3 examples/python/lease_example.py --address localhost:8080

Keep-alives go to the leader; against a cluster, point --address at it.
"""

import argparse
import sys
import threading
import time
from pathlib import Path

try:
    import kvdb.v1.lease_service_pb2  # noqa: F401  (already on sys.path?)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gen" / "python"))

import grpc

from kvdb.v1 import kv_service_pb2 as kv_pb
from kvdb.v1 import kv_service_pb2_grpc as kv_grpc
from kvdb.v1 import lease_service_pb2 as lease_pb
from kvdb.v1 import lease_service_pb2_grpc as lease_grpc

TIMEOUT = 5.0


class KeepAlive(threading.Thread):
    """Renews a lease every third of its TTL over one LeaseKeepAlive stream
    until stop() is called."""

    def __init__(self, stub, lease_id, ttl):
        super().__init__(daemon=True)
        self.stub, self.lease_id, self.ttl = stub, lease_id, ttl
        self.stopped = threading.Event()
        self.renewals = 0

    def requests(self):
        while not self.stopped.is_set():
            yield lease_pb.LeaseKeepAliveRequest(id=self.lease_id)
            self.stopped.wait(self.ttl / 3)

    def run(self):
        try:
            for resp in self.stub.LeaseKeepAlive(self.requests()):
                if resp.ttl <= 0:
                    print(f"  lease {self.lease_id:x} is gone")
                    return
                self.renewals += 1
        except grpc.RpcError as err:
            if not self.stopped.is_set():
                print(f"  keep-alive ended: {err.code().name} {err.details()}")

    def stop(self):
        self.stopped.set()
        self.join(timeout=TIMEOUT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="localhost:8080", help="the leader's host:port")
    parser.add_argument("--ttl", type=int, default=2, help="the lease's TTL in seconds")
    args = parser.parse_args(argv)

    with grpc.insecure_channel(args.address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        except grpc.FutureTimeoutError:
            print(f"{parser.prog}: cannot reach a KVDB node at {args.address}", file=sys.stderr)
            return 1
        kv = kv_grpc.KVServiceStub(channel)
        leases = lease_grpc.LeaseServiceStub(channel)

        grant = leases.LeaseGrant(lease_pb.LeaseGrantRequest(ttl=args.ttl), timeout=TIMEOUT)
        print(f"LEASE GRANT -> {grant.id:x} (TTL {grant.ttl}s)")
        kv.Put(kv_pb.PutRequest(key=b"services/api/1", value=b"10.0.0.7:80", lease=grant.id), timeout=TIMEOUT)
        kv.Put(kv_pb.PutRequest(key=b"otp/alice", value=b"493817", ttl_ms=60_000), timeout=TIMEOUT)

        keeper = KeepAlive(leases, grant.id, grant.ttl)
        keeper.start()
        time.sleep(grant.ttl * 2)  # two TTLs: the key lives on the keep-alives
        got = kv.Get(kv_pb.GetRequest(key=b"services/api/1"), timeout=TIMEOUT)
        print(f"GET services/api/1 -> {got.kv.value.decode()!r} (lease {got.kv.lease:x}) after {keeper.renewals} renewals")
        otp = kv.Get(kv_pb.GetRequest(key=b"otp/alice"), timeout=TIMEOUT)
        left = (otp.kv.deadline_ms - int(time.time() * 1000)) / 1000
        print(f"GET otp/alice -> expires in about {left:.0f}s")
        ttl = leases.LeaseTimeToLive(lease_pb.LeaseTimeToLiveRequest(id=grant.id, keys=True), timeout=TIMEOUT)
        print(f"LEASE TIMETOLIVE -> remaining {ttl.ttl}s of {ttl.granted_ttl}s, keys {[k.decode() for k in ttl.keys]}")

        keeper.stop()
        print("keep-alives stopped")
        deadline = time.time() + grant.ttl + 5
        while time.time() < deadline:
            try:
                kv.Get(kv_pb.GetRequest(key=b"services/api/1"), timeout=TIMEOUT)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                print("GET services/api/1 -> NOT_FOUND (the lease expired)")
                return 0
            time.sleep(0.1)
        print("the key outlived its lease", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

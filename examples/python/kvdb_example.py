#!/usr/bin/python3
"""A tour of KVDB from Python through the generated gRPC client.

Connects to a node, puts and gets a key, scans a prefix, increments a
counter in a transaction that is retried when it aborts, and prints STATS.

    make run                                   # a node on localhost:8080
    /usr/bin/python3 examples/python/kvdb_example.py --address localhost:8080

Against a node with TLS (-cert-file/-key-file), add --cacert (the CA that
signed the server's certificate) and, when the node also requires client
certificates (-client-cert-auth), --cert and --key: the same flags as
kvdbctl.

It needs grpcio and protobuf (Debian: python3-grpcio python3-protobuf, which
install into /usr/bin/python3) and the generated code in gen/python, which
this script finds relative to itself unless it is already importable.
"""

import argparse
import random
import sys
import time
from pathlib import Path

try:
    import kvdb.v1.kv_service_pb2  # noqa: F401  (already on sys.path?)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gen" / "python"))

import grpc

from kvdb.v1 import admin_service_pb2 as admin_pb
from kvdb.v1 import admin_service_pb2_grpc as admin_grpc
from kvdb.v1 import kv_service_pb2 as kv_pb
from kvdb.v1 import kv_service_pb2_grpc as kv_grpc
from kvdb.v1 import txn_service_pb2 as txn_pb
from kvdb.v1 import txn_service_pb2_grpc as txn_grpc

# Every call carries a deadline: a call without one can wait forever on a
# node that lost its leader.
TIMEOUT = 5.0


class Client:
    """The three service stubs over one channel."""

    def __init__(self, channel):
        self.kv = kv_grpc.KVServiceStub(channel)
        self.txn = txn_grpc.TxnServiceStub(channel)
        self.admin = admin_grpc.AdminServiceStub(channel)


def in_transaction(client, body, attempts=5):
    """Run body(txn_id) in an interactive transaction and commit it.

    ABORTED means a key the transaction read changed before it committed:
    the transaction is over, so the whole of it, reads included, runs again
    from Begin after a short randomized backoff. Any other error rolls the
    transaction back and is raised. Returns (body's result, CommitResponse).
    """
    for attempt in range(1, attempts + 1):
        txn_id = client.txn.Begin(txn_pb.BeginRequest(), timeout=TIMEOUT).txn_id
        try:
            result = body(txn_id)
            commit = client.txn.Commit(txn_pb.CommitRequest(txn_id=txn_id), timeout=TIMEOUT)
            return result, commit
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.ABORTED:
                rollback_quietly(client, txn_id)
                raise
            if attempt == attempts:
                raise
            print(f"  attempt {attempt} aborted ({err.details()}); retrying")
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def rollback_quietly(client, txn_id):
    """Discards a transaction; it may already be gone (committed or expired)."""
    try:
        client.txn.Rollback(txn_pb.RollbackRequest(txn_id=txn_id), timeout=TIMEOUT)
    except grpc.RpcError:
        pass


def increment(client, key):
    """Adds one to the decimal counter at key, transactionally."""

    def body(txn_id):
        try:
            got = client.txn.Get(txn_pb.TxnServiceGetRequest(txn_id=txn_id, key=key), timeout=TIMEOUT)
            n = int(got.kv.value or b"0")
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            n = 0  # a missing key is recorded as read, so a concurrent create aborts us
        client.txn.Put(txn_pb.TxnServicePutRequest(txn_id=txn_id, key=key, value=b"%d" % (n + 1)), timeout=TIMEOUT)
        return n + 1

    value, _ = in_transaction(client, body)
    return value


def open_channel(args):
    """A plaintext channel, or a TLS one when any of --cacert/--cert/--key is given."""
    if not (args.cacert or args.cert or args.key):
        return grpc.insecure_channel(args.address)
    if bool(args.cert) != bool(args.key):
        raise SystemExit("give both --cert and --key, or neither")

    def read(path):
        return Path(path).read_bytes() if path else None

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.cacert),
        private_key=read(args.key),
        certificate_chain=read(args.cert),
    )
    return grpc.secure_channel(args.address, creds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="localhost:8080", help="a node's host:port")
    parser.add_argument("--connect-timeout", type=float, default=TIMEOUT,
                        help="seconds to wait for the node to accept the connection")
    parser.add_argument("--cacert", help="connect over TLS, verifying the server with this CA bundle (PEM)")
    parser.add_argument("--cert", help="client certificate (PEM) for a node with -client-cert-auth")
    parser.add_argument("--key", help="key of --cert (PEM)")
    args = parser.parse_args(argv)

    with open_channel(args) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            # One line instead of a traceback: the usual cause is a node
            # that is not running, a wrong --address, or (with TLS) a
            # certificate the node refuses.
            print(f"{parser.prog}: cannot reach a KVDB node at {args.address} "
                  f"within {args.connect_timeout:g} s (is kvdb-server running there?)", file=sys.stderr)
            return 1
        client = Client(channel)

        put = client.kv.Put(kv_pb.PutRequest(key=b"greeting", value=b"hello from python"), timeout=TIMEOUT)
        print(f"PUT greeting -> revision {put.header.revision}")

        got = client.kv.Get(kv_pb.GetRequest(key=b"greeting"), timeout=TIMEOUT)
        print(f"GET greeting -> {got.kv.value.decode()!r} (version {got.kv.version})")

        try:
            client.kv.Get(kv_pb.GetRequest(key=b"no-such-key"), timeout=TIMEOUT)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            print("GET no-such-key -> NOT_FOUND")

        client.kv.Batch(kv_pb.BatchRequest(ops=[
            kv_pb.BatchOp(put=kv_pb.BatchPut(key=b"fruit/apple", value=b"red")),
            kv_pb.BatchOp(put=kv_pb.BatchPut(key=b"fruit/banana", value=b"yellow")),
            kv_pb.BatchOp(put=kv_pb.BatchPut(key=b"fruit/cherry", value=b"dark red")),
        ]), timeout=TIMEOUT)
        scan = client.kv.Range(kv_pb.RangeRequest(key=b"fruit/", prefix=True), timeout=TIMEOUT)
        print(f"SCAN fruit/ -> {scan.count} keys")
        for kv in scan.kvs:
            print(f"  {kv.key.decode()} = {kv.value.decode()}")

        counter = increment(client, b"counter")
        print(f"TXN counter -> {counter}")

        stats = client.admin.Stats(admin_pb.StatsRequest(), timeout=TIMEOUT)
        print("STATS")
        print(f"  keys={stats.storage.keys} memory_usage={stats.storage.memory_usage} revision={stats.storage.version}")
        print(f"  node={stats.raft.node_id} term={stats.raft.current_term} leader={stats.raft.leader_id}")
        print(f"  total_requests={stats.network.total_requests} txn_commits={stats.transactions.commits}")
        for name, op in sorted(stats.metrics.operations.items()):
            print(f"  {name}: count={op.count} avg={op.avg_latency}us p99={op.p99_latency}us")
    return 0


if __name__ == "__main__":
    sys.exit(main())

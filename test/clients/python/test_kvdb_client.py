#!/usr/bin/python3
"""Every RPC of KVService, TxnService and AdminService through the generated
Python client, against the single node at $KVDB_ADDRESS.

Run by test/clients (make test-clients), which starts the node. Each test uses
its own key prefix, so the tests do not depend on their order; the node must
be a fresh single-node cluster named node1.
"""

import os
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "gen" / "python"))
sys.path.insert(0, str(ROOT / "examples" / "python"))

import grpc  # noqa: E402

import kvdb_example  # noqa: E402
from kvdb.v1 import admin_service_pb2 as admin_pb  # noqa: E402
from kvdb.v1 import kv_pb2  # noqa: E402
from kvdb.v1 import kv_service_pb2 as kv_pb  # noqa: E402
from kvdb.v1 import txn_service_pb2 as txn_pb  # noqa: E402

ADDRESS = os.environ.get("KVDB_ADDRESS", "localhost:8080")
TIMEOUT = 10.0


class KVDBTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(ADDRESS)
        grpc.channel_ready_future(cls.channel).result(timeout=TIMEOUT)
        cls.c = kvdb_example.Client(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def assertCode(self, code, call, *args):
        """Asserts that call(*args, timeout=...) fails with code; returns the error."""
        with self.assertRaises(grpc.RpcError) as cm:
            call(*args, timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception

    def put(self, key, value):
        return self.c.kv.Put(kv_pb.PutRequest(key=key, value=value), timeout=TIMEOUT)

    def get(self, key):
        return self.c.kv.Get(kv_pb.GetRequest(key=key), timeout=TIMEOUT).kv.value


class KVServiceTest(KVDBTestCase):
    def test_put_get(self):
        first = self.put(b"kv/a", b"1")
        self.assertGreater(first.header.revision, 0)
        second = self.c.kv.Put(kv_pb.PutRequest(key=b"kv/a", value=b"2", prev_kv=True), timeout=TIMEOUT)
        self.assertGreater(second.header.revision, first.header.revision)
        self.assertEqual(second.prev_kv.value, b"1")

        got = self.c.kv.Get(kv_pb.GetRequest(key=b"kv/a"), timeout=TIMEOUT)
        self.assertEqual(got.kv.key, b"kv/a")
        self.assertEqual(got.kv.value, b"2")
        self.assertEqual(got.kv.version, 2)
        self.assertEqual(got.kv.create_revision, first.header.revision)
        self.assertEqual(got.kv.mod_revision, second.header.revision)

        serializable = self.c.kv.Get(
            kv_pb.GetRequest(key=b"kv/a", consistency=kv_pb2.CONSISTENCY_SERIALIZABLE), timeout=TIMEOUT)
        self.assertEqual(serializable.kv.value, b"2")

    def test_binary_keys_and_values(self):
        key, value = b"kv/bin/\x00\xff\xfe", bytes(range(256))
        self.put(key, value)
        self.assertEqual(self.get(key), value)

    def test_errors(self):
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.kv.Get, kv_pb.GetRequest(key=b"kv/missing"))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.kv.Put, kv_pb.PutRequest(key=b"", value=b"x"))
        err = self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.kv.Put,
                              kv_pb.PutRequest(key=b"k" * 5000, value=b"x"))
        self.assertIn("max-key-size", err.details())

    def test_delete(self):
        self.put(b"kv/del/one", b"1")
        resp = self.c.kv.Delete(kv_pb.DeleteRequest(key=b"kv/del/one", prev_kv=True), timeout=TIMEOUT)
        self.assertEqual(resp.deleted, 1)
        self.assertEqual([kv.value for kv in resp.prev_kvs], [b"1"])
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.kv.Get, kv_pb.GetRequest(key=b"kv/del/one"))

        missing = self.c.kv.Delete(kv_pb.DeleteRequest(key=b"kv/del/one"), timeout=TIMEOUT)
        self.assertEqual(missing.deleted, 0)

        for k in (b"kv/del/p/1", b"kv/del/p/2", b"kv/del/q"):
            self.put(k, b"v")
        prefix = self.c.kv.Delete(kv_pb.DeleteRequest(key=b"kv/del/p/", prefix=True), timeout=TIMEOUT)
        self.assertEqual(prefix.deleted, 2)
        self.assertEqual(self.get(b"kv/del/q"), b"v")

    def test_range(self):
        for i in range(5):
            self.put(b"kv/range/%d" % i, b"v%d" % i)
        self.put(b"kv/rangeX", b"outside")

        every = self.c.kv.Range(kv_pb.RangeRequest(key=b"kv/range/", prefix=True), timeout=TIMEOUT)
        self.assertEqual([kv.key for kv in every.kvs], [b"kv/range/%d" % i for i in range(5)])
        self.assertEqual(every.count, 5)
        self.assertFalse(every.more)

        limited = self.c.kv.Range(kv_pb.RangeRequest(key=b"kv/range/", prefix=True, limit=2), timeout=TIMEOUT)
        self.assertEqual(len(limited.kvs), 2)
        self.assertTrue(limited.more)
        self.assertEqual(limited.count, 5)

        half_open = self.c.kv.Range(
            kv_pb.RangeRequest(key=b"kv/range/1", range_end=b"kv/range/3", keys_only=True), timeout=TIMEOUT)
        self.assertEqual([kv.key for kv in half_open.kvs], [b"kv/range/1", b"kv/range/2"])
        self.assertTrue(all(kv.value == b"" for kv in half_open.kvs))

        count = self.c.kv.Range(kv_pb.RangeRequest(key=b"kv/range/", prefix=True, count_only=True), timeout=TIMEOUT)
        self.assertEqual(count.count, 5)
        self.assertEqual(len(count.kvs), 0)

    def test_batch(self):
        self.put(b"kv/batch/old", b"x")
        resp = self.c.kv.Batch(kv_pb.BatchRequest(ops=[
            kv_pb.BatchOp(put=kv_pb.BatchPut(key=b"kv/batch/a", value=b"1")),
            kv_pb.BatchOp(put=kv_pb.BatchPut(key=b"kv/batch/b", value=b"2")),
            kv_pb.BatchOp(delete=kv_pb.BatchDelete(key=b"kv/batch/old")),
        ]), timeout=TIMEOUT)
        self.assertEqual((resp.puts, resp.deleted), (2, 1))
        a = self.c.kv.Get(kv_pb.GetRequest(key=b"kv/batch/a"), timeout=TIMEOUT)
        b = self.c.kv.Get(kv_pb.GetRequest(key=b"kv/batch/b"), timeout=TIMEOUT)
        self.assertEqual(a.kv.mod_revision, resp.header.revision)
        self.assertEqual(b.kv.mod_revision, resp.header.revision)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.kv.Get, kv_pb.GetRequest(key=b"kv/batch/old"))

        # Atomic: an invalid op refuses the whole batch.
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.kv.Batch, kv_pb.BatchRequest(ops=[
            kv_pb.BatchOp(put=kv_pb.BatchPut(key=b"kv/batch/c", value=b"3")),
            kv_pb.BatchOp(put=kv_pb.BatchPut(key=b"", value=b"4")),
        ]))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.kv.Get, kv_pb.GetRequest(key=b"kv/batch/c"))


class TxnServiceTest(KVDBTestCase):
    def begin(self, txn_id=""):
        return self.c.txn.Begin(txn_pb.BeginRequest(txn_id=txn_id), timeout=TIMEOUT)

    def test_interactive_commit(self):
        self.put(b"txn/c/a", b"old")
        self.put(b"txn/c/gone", b"x")
        begin = self.begin("py-commit")
        self.assertEqual(begin.txn_id, "py-commit")
        self.assertGreater(begin.start_revision, 0)
        tid = begin.txn_id

        got = self.c.txn.Get(txn_pb.TxnServiceGetRequest(txn_id=tid, key=b"txn/c/a"), timeout=TIMEOUT)
        self.assertEqual(got.kv.value, b"old")
        self.c.txn.Put(txn_pb.TxnServicePutRequest(txn_id=tid, key=b"txn/c/a", value=b"new"), timeout=TIMEOUT)
        self.c.txn.Put(txn_pb.TxnServicePutRequest(txn_id=tid, key=b"txn/c/b", value=b"b"), timeout=TIMEOUT)
        self.c.txn.Delete(txn_pb.TxnServiceDeleteRequest(txn_id=tid, key=b"txn/c/gone"), timeout=TIMEOUT)

        # The transaction sees its own writes; nobody else does yet.
        own = self.c.txn.Get(txn_pb.TxnServiceGetRequest(txn_id=tid, key=b"txn/c/a"), timeout=TIMEOUT)
        self.assertEqual(own.kv.value, b"new")
        scan = self.c.txn.Range(txn_pb.TxnServiceRangeRequest(txn_id=tid, key=b"txn/c/", prefix=True),
                                timeout=TIMEOUT)
        self.assertEqual([kv.key for kv in scan.kvs], [b"txn/c/a", b"txn/c/b"])
        self.assertFalse(scan.more)
        self.assertEqual(self.get(b"txn/c/a"), b"old")

        commit = self.c.txn.Commit(txn_pb.CommitRequest(txn_id=tid), timeout=TIMEOUT)
        self.assertEqual((commit.puts, commit.deleted), (2, 1))
        self.assertEqual(self.get(b"txn/c/a"), b"new")
        self.assertEqual(self.get(b"txn/c/b"), b"b")
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.kv.Get, kv_pb.GetRequest(key=b"txn/c/gone"))

        # The transaction ended with its commit.
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.txn.Commit, txn_pb.CommitRequest(txn_id=tid))

    def test_rollback(self):
        tid = self.begin().txn_id
        self.assertTrue(tid)
        self.c.txn.Put(txn_pb.TxnServicePutRequest(txn_id=tid, key=b"txn/rb/a", value=b"1"), timeout=TIMEOUT)
        self.c.txn.Rollback(txn_pb.RollbackRequest(txn_id=tid), timeout=TIMEOUT)
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.kv.Get, kv_pb.GetRequest(key=b"txn/rb/a"))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.txn.Get,
                        txn_pb.TxnServiceGetRequest(txn_id=tid, key=b"txn/rb/a"))

    def test_errors(self):
        self.begin("py-dup")
        self.assertCode(grpc.StatusCode.ALREADY_EXISTS, self.c.txn.Begin, txn_pb.BeginRequest(txn_id="py-dup"))
        self.c.txn.Rollback(txn_pb.RollbackRequest(txn_id="py-dup"), timeout=TIMEOUT)

        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.txn.Put,
                        txn_pb.TxnServicePutRequest(txn_id="py-no-such-txn", key=b"k", value=b"v"))
        tid = self.begin().txn_id
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.txn.Get,
                        txn_pb.TxnServiceGetRequest(txn_id=tid, key=b"txn/err/missing"))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.txn.Put,
                        txn_pb.TxnServicePutRequest(txn_id=tid, key=b"", value=b"v"))
        kvdb_example.rollback_quietly(self.c, tid)

    def test_conflict_aborts(self):
        self.put(b"txn/conflict", b"1")
        tid = self.begin().txn_id
        self.c.txn.Get(txn_pb.TxnServiceGetRequest(txn_id=tid, key=b"txn/conflict"), timeout=TIMEOUT)
        self.c.txn.Put(txn_pb.TxnServicePutRequest(txn_id=tid, key=b"txn/conflict", value=b"txn"), timeout=TIMEOUT)
        self.put(b"txn/conflict", b"outside")
        err = self.assertCode(grpc.StatusCode.ABORTED, self.c.txn.Commit, txn_pb.CommitRequest(txn_id=tid))
        self.assertIn("txn/conflict", err.details())
        self.assertEqual(self.get(b"txn/conflict"), b"outside")

    def test_example_retries_on_aborted(self):
        """The example's in_transaction runs the body again after ABORTED."""
        self.put(b"txn/retry", b"10")
        attempts = []

        def body(txn_id):
            got = self.c.txn.Get(txn_pb.TxnServiceGetRequest(txn_id=txn_id, key=b"txn/retry"), timeout=TIMEOUT)
            n = int(got.kv.value)
            attempts.append(n)
            if len(attempts) == 1:
                self.put(b"txn/retry", b"20")  # a concurrent writer: this attempt must abort
            self.c.txn.Put(txn_pb.TxnServicePutRequest(txn_id=txn_id, key=b"txn/retry", value=b"%d" % (n + 1)),
                           timeout=TIMEOUT)
            return n + 1

        result, commit = kvdb_example.in_transaction(self.c, body)
        self.assertEqual(attempts, [10, 20])
        self.assertEqual(result, 21)
        self.assertEqual(commit.puts, 1)
        self.assertEqual(self.get(b"txn/retry"), b"21")

    def test_execute(self):
        self.put(b"txn/cas", b"v1")
        cas = txn_pb.ExecuteRequest(
            compares=[txn_pb.Compare(key=b"txn/cas", operator=txn_pb.COMPARE_OPERATOR_EQUAL, value=b"v1")],
            success=[txn_pb.ExecuteOp(put=kv_pb.PutRequest(key=b"txn/cas", value=b"v2"))],
            failure=[txn_pb.ExecuteOp(range=kv_pb.RangeRequest(key=b"txn/cas"))],
        )
        won = self.c.txn.Execute(cas, timeout=TIMEOUT)
        self.assertTrue(won.succeeded)
        self.assertEqual(len(won.responses), 1)
        self.assertEqual(won.responses[0].WhichOneof("response"), "put")
        self.assertEqual(self.get(b"txn/cas"), b"v2")

        lost = self.c.txn.Execute(cas, timeout=TIMEOUT)
        self.assertFalse(lost.succeeded)
        self.assertEqual(lost.responses[0].range.kvs[0].value, b"v2")

        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.txn.Execute, txn_pb.ExecuteRequest(
            compares=[txn_pb.Compare(key=b"txn/cas", operator=txn_pb.COMPARE_OPERATOR_UNSPECIFIED, value=b"v")]))


class AdminServiceTest(KVDBTestCase):
    def test_status(self):
        st = self.c.admin.Status(admin_pb.StatusRequest(), timeout=TIMEOUT)
        self.assertEqual(st.node_id, "node1")
        self.assertTrue(st.is_leader)
        self.assertEqual(st.leader_id, "node1")
        self.assertEqual(st.raft_state, "leader")
        self.assertGreater(st.term, 0)
        self.assertGreaterEqual(st.commit_index, st.applied_index)
        self.assertNotEqual(st.leader_member_id, 0)
        self.assertEqual(st.leader_member_id, st.header.member_id)

    def test_stats(self):
        self.put(b"admin/stats", b"x")
        stats = self.c.admin.Stats(admin_pb.StatsRequest(), timeout=TIMEOUT)
        self.assertGreaterEqual(stats.storage.keys, 1)
        self.assertGreater(stats.storage.memory_usage, 0)
        self.assertEqual(stats.raft.node_id, "node1")
        self.assertEqual(stats.raft.state, 2)  # leader
        self.assertGreater(stats.network.total_requests, 0)
        self.assertGreaterEqual(stats.metrics.operations["PUT"].count, 1)
        self.assertGreater(stats.metrics.uptime_seconds, 0)

    def test_member_list(self):
        resp = self.c.admin.MemberList(admin_pb.MemberListRequest(), timeout=TIMEOUT)
        self.assertEqual([(m.name, m.is_leader, m.is_learner) for m in resp.members], [("node1", True, False)])
        self.assertNotEqual(resp.members[0].id, 0)

    def test_member_changes_refused_on_one_node(self):
        # A standalone node serves no peer traffic, so it takes no members.
        err = self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, self.c.admin.MemberAdd,
                              admin_pb.MemberAddRequest(name="node2", address="127.0.0.1:1"))
        self.assertIn("standalone", err.details())
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.admin.MemberAdd,
                        admin_pb.MemberAddRequest(name="node2", address="no-port"))
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.admin.MemberRemove,
                        admin_pb.MemberRemoveRequest(name="node9"))
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION, self.c.admin.MemberRemove,
                        admin_pb.MemberRemoveRequest(name="node1"))
        members = self.c.admin.MemberList(admin_pb.MemberListRequest(), timeout=TIMEOUT).members
        self.assertEqual([m.name for m in members], ["node1"])

    def test_transfer_leader(self):
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.admin.TransferLeader,
                        admin_pb.TransferLeaderRequest(name="node9"))
        # No other voter to choose.
        self.assertCode(grpc.StatusCode.NOT_FOUND, self.c.admin.TransferLeader, admin_pb.TransferLeaderRequest())
        # Handing leadership to itself is a no-op that succeeds.
        resp = self.c.admin.TransferLeader(admin_pb.TransferLeaderRequest(name="node1"), timeout=TIMEOUT)
        self.assertEqual(resp.leader, "node1")


if __name__ == "__main__":
    unittest.main(verbosity=2)

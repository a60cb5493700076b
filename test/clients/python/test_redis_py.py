"""redis-py (Debian's python3-redis) against a KVDB node's Redis protocol.

Usage: test_redis_py.py HOST:PORT. Prints "redis-py ok" and exits 0 when
every check passes.
"""
import sys

import redis


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    for proto in (2, 3):
        kwargs = {"host": host, "port": int(port), "socket_timeout": 10}
        try:
            r = redis.Redis(protocol=proto, **kwargs)
        except TypeError:  # redis-py before 5 speaks RESP2 only
            if proto == 3:
                continue
            r = redis.Redis(**kwargs)
        r.flushdb()
        assert r.ping()
        assert r.set("greeting", "hello")
        assert r.get("greeting") == b"hello"
        assert r.get("missing") is None
        assert r.mset({"a": "1", "b": "2"})
        assert r.mget("a", "b", "c") == [b"1", b"2", None]
        assert r.incr("counter") == 1
        assert r.incrby("counter", 41) == 42
        assert r.decr("counter") == 41
        assert r.incrbyfloat("f", 2.5) == 2.5
        assert r.append("greeting", " world") == 11
        assert r.setnx("greeting", "x") is False
        assert r.exists("a", "b", "nope") == 2
        assert sorted(r.keys("*")) == [b"a", b"b", b"counter", b"f", b"greeting"]
        assert r.dbsize() == 5
        assert r.delete("a", "b") == 2
        try:
            r.incr("greeting")
            raise AssertionError("INCR of a string succeeded")
        except redis.ResponseError as e:
            assert "not an integer" in str(e)

        pipe = r.pipeline(transaction=False)
        for i in range(100):
            pipe.set("p%d" % i, i)
            pipe.incr("pc")
        res = pipe.execute()
        assert res[-1] == 100, res[-1]

        with r.pipeline() as tx:  # MULTI/EXEC
            tx.set("t", "1").incr("t").get("t")
            assert tx.execute() == [True, 2, b"2"]

        # WATCH: a change from another connection aborts the transaction.
        other = redis.Redis(**kwargs)
        with r.pipeline() as tx:
            tx.watch("t")
            other.set("t", "theirs")
            tx.multi()
            tx.set("t", "mine")
            try:
                tx.execute()
                raise AssertionError("EXEC succeeded after a watched change")
            except redis.WatchError:
                pass
        assert r.get("t") == b"theirs"
        info = r.info("replication")
        assert info["role"] == "master", info
    print("redis-py ok")


if __name__ == "__main__":
    main()

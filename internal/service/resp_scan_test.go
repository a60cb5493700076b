package service

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRESPScanCursorAcrossConnections: a SCAN cursor handed out on one
// connection resumes on another (a pooled client sends each page where it
// likes), a page asked for again with the same cursor gives the same keys,
// and an unknown cursor is refused.
func TestRESPScanCursorAcrossConnections(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	a := redisClient(t, n.addr, 2, func(o *redis.Options) { o.PoolSize = 1 })
	b := redisClient(t, n.addr, 3, func(o *redis.Options) { o.PoolSize = 1 })
	for i := range 25 {
		must(a.Set(ctx, fmt.Sprintf("k%02d", i), "v", 0).Result())
	}
	var scanned []string
	var cursor uint64
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("SCAN never ended")
		}
		c := a
		if page%2 == 1 {
			c = b
		}
		keys, next, err := c.Scan(ctx, cursor, "k*", 4).Result()
		if err != nil {
			t.Fatalf("page %d on connection %d: %v", page, page%2, err)
		}
		if page == 1 {
			// Asked again, on the other connection: the same page.
			again, againNext, err := a.Scan(ctx, cursor, "k*", 4).Result()
			if err != nil || strings.Join(again, ",") != strings.Join(keys, ",") || (againNext == 0) != (next == 0) {
				t.Fatalf("page asked again: %v %v (next %d), first time %v (next %d)", again, err, againNext, keys, next)
			}
		}
		scanned = append(scanned, keys...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(scanned) != 25 || scanned[0] != "k00" || scanned[24] != "k24" {
		t.Fatalf("scanned %d keys: %v", len(scanned), scanned)
	}
	wantErr(t, b.Do(ctx, "SCAN", "12345").Err(), "ERR invalid cursor")
	wantErr(t, b.Do(ctx, "SCAN", "-1").Err(), "ERR invalid cursor")
}

// TestScanCursorsBounded: the node's cursor table forgets its least
// recently used cursors beyond its count and byte bounds.
func TestScanCursorsBounded(t *testing.T) {
	var sc scanCursors
	first := sc.put([]byte("first"))
	second := sc.put([]byte("second"))
	for i := range maxScanCursors - 2 {
		if i == maxScanCursors/2 {
			// Using a cursor makes it the most recent.
			if k, ok := sc.get(first); !ok || string(k) != "first" {
				t.Fatalf("cursor %d: %q %v", first, k, ok)
			}
		}
		if sc.put([]byte("k")) == 0 {
			t.Fatal("cursor 0 handed out")
		}
	}
	if len(sc.m) != maxScanCursors {
		t.Fatalf("%d cursors held, want %d", len(sc.m), maxScanCursors)
	}
	sc.put([]byte("one more"))
	if _, ok := sc.get(second); ok {
		t.Fatal("the least recently used cursor was kept over the bound")
	}
	if _, ok := sc.get(first); !ok {
		t.Fatal("a recently used cursor was forgotten")
	}
	big := make([]byte, 1<<20)
	for range maxScanCursorBytes/len(big) + 8 {
		sc.put(big)
	}
	if sc.bytes > maxScanCursorBytes || len(sc.m) > maxScanCursors {
		t.Fatalf("%d cursors holding %d bytes: over the bounds", len(sc.m), sc.bytes)
	}
}

// TestRESPKeysAndScanBounded: KEYS refuses a reply over
// max-response-bytes instead of building it, and names SCAN; SCAN with a
// COUNT over that limit returns a shorter page and a cursor, and its pages
// still list every key once.
func TestRESPKeysAndScanBounded(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.Limits.MaxResponseBytes = 1000 })
	ctx := ctxT(t)
	c := redisClient(t, n.addr, 1, nil)
	const keys = 200 // 13 reply bytes each ("$7\r\nkey:007\r\n"): 2,600 in all
	for i := range keys {
		must(c.Set(ctx, fmt.Sprintf("key:%03d", i), "v", 0).Result())
	}
	all, err := c.Keys(ctx, "*").Result()
	if err == nil {
		t.Fatalf("KEYS *: %d keys, want an error", len(all))
	}
	wantErr(t, err, "ERR the reply of 'keys' would be over the max-response-bytes limit of 1000 bytes: ask for fewer keys (SCAN lists them a page at a time)")
	wantErr(t, c.Keys(ctx, "key:*").Err(), "ERR the reply of 'keys'")
	// A pattern that matches few keys reads every page of the key space
	// (each page is bounded in bytes too).
	if fives, err := c.Keys(ctx, "*5").Result(); err != nil || len(fives) != keys/10 {
		t.Fatalf("KEYS *5: %d keys %v, want %d", len(fives), err, keys/10)
	}
	few, err := c.Keys(ctx, "key:01*").Result()
	if err != nil || len(few) != 10 {
		t.Fatalf("KEYS key:01*: %v %v", few, err)
	}
	var scanned []string
	var cursor uint64
	for page := 0; ; page++ {
		if page > keys {
			t.Fatal("SCAN never ended")
		}
		got, next, err := c.Scan(ctx, cursor, "", 10_000).Result()
		if err != nil {
			t.Fatal(err)
		}
		if size := len(got) * 13; size > 1000+13 {
			t.Fatalf("page %d: %d keys, about %d bytes over a 1000-byte limit", page, len(got), size)
		}
		scanned = append(scanned, got...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(scanned) != keys || scanned[0] != "key:000" || scanned[keys-1] != fmt.Sprintf("key:%03d", keys-1) {
		t.Fatalf("SCAN listed %d keys, want %d", len(scanned), keys)
	}
}

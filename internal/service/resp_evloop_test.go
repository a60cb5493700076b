package service

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// respModes runs f with Redis-protocol connections on event loops (the
// default, on Linux) and with a goroutine each.
func connModes(t *testing.T, f func(t *testing.T, mode func(*Config))) {
	for _, m := range []struct {
		name  string
		loops int
	}{{"loops", 1}, {"goroutines", -1}} {
		t.Run(m.name, func(t *testing.T) {
			f(t, func(c *Config) { c.EventLoops = m.loops })
		})
	}
}

// TestRESPRefusedWriteAnswersInOrder: a write refused while writes before
// it are still pending is answered after them, in command order.
func TestRESPRefusedWriteAnswersInOrder(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), func(c *Config) { mode(c); c.Limits.MaxKeySize = 64 })
		r := dialRESP(t, n.addr)
		for range 20 {
			r.send("SET k v", "INCRBY k notanumber", "SET k2 v2", "SET "+strings.Repeat("x", 100)+" v",
				"DEL k2", "INCR k", "MSET a", "GET k")
			r.expect("+OK", "-ERR value is not an integer or out of range", "+OK", "-ERR key is 100 bytes, over the max-key-size limit of 64 bytes",
				":1", "-ERR value is not an integer or out of range", "-ERR wrong number of arguments for 'mset' command",
				"$1", "v")
		}
	})
}

// TestRESPPipelineMixesInlineAndDetachedCommands: commands a loop answers
// itself and commands that run on a goroutine of their own keep their
// order in one pipeline.
func TestRESPPipelineMixesInlineAndDetachedCommands(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), mode)
		r := dialRESP(t, n.addr)
		for i := range 10 {
			r.send("SET a 1", "MULTI", "INCR a", "INCR a", "EXEC", "GET a", "CLIENT SETNAME c"+itoa(int64(i)),
				"CLIENT GETNAME", "SET b 2", "SET c 3 NX", "GET b", "EXISTS a b c", "DEL c", "PING")
			r.expect("+OK", "+OK", "+QUEUED", "+QUEUED", "*2", ":2", ":3", "$1", "3", "+OK",
				"$2", "c"+itoa(int64(i)), "+OK", "+OK", "$1", "2", ":3", ":1", "+PONG")
		}
		r.send("SET q 1", "QUIT", "GET q")
		r.expect("+OK", "+OK")
		r.expectClose()
	})
}

// TestRESPSlowReaderGetsEveryReply: a client that sends a long pipeline of
// large reads before it reads anything gets every reply, in order, once
// it reads (the socket refuses output for a while).
func TestRESPSlowReaderGetsEveryReply(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), mode)
		r := dialRESP(t, n.addr)
		big := strings.Repeat("v", 64<<10)
		r.send("SET big " + big)
		r.expect("+OK")
		const gets = 400 // 25 MiB of replies
		var b strings.Builder
		for range gets {
			b.WriteString("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
		}
		b.WriteString("*1\r\n$4\r\nPING\r\n")
		sent := make(chan error, 1)
		go func() {
			_, err := io.WriteString(r.c, b.String())
			sent <- err
		}()
		time.Sleep(300 * time.Millisecond)
		for i := range gets {
			line, err := r.br.ReadString('\n')
			if err != nil || line != "$65536\r\n" {
				t.Fatalf("reply %d: %q %v", i, line, err)
			}
			data := make([]byte, 65536+2)
			if _, err := io.ReadFull(r.br, data); err != nil || string(data[:65536]) != big {
				t.Fatalf("reply %d data: %v", i, err)
			}
		}
		r.expect("+PONG")
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	})
}

// TestRESPTimeouts: an idle connection is closed after -resp idle timeout;
// a command whose rest does not arrive within the read timeout too.
func TestRESPTimeouts(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), func(c *Config) {
			mode(c)
			c.RESP.IdleTimeout = 400 * time.Millisecond
			c.RESP.ReadTimeout = 300 * time.Millisecond
		})
		idle := dialRESP(t, n.addr)
		idle.send("PING")
		idle.expect("+PONG")
		partial := dialRESP(t, n.addr)
		partial.raw("*2\r\n$3\r\nGET\r\n$5\r\nab")
		busy := dialRESP(t, n.addr)
		for range 8 { // busier than the idle timeout, never idle as long
			busy.send("PING")
			busy.expect("+PONG")
			time.Sleep(100 * time.Millisecond)
		}
		idle.expectClose()
		partial.expectClose()
		busy.send("PING")
		busy.expect("+PONG")
	})
}

// TestRESPShutdownWithWritesInFlight: the node shuts down while loop
// connections have pipelined writes in flight and unread replies.
func TestRESPShutdownWithWritesInFlight(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), mode)
		var conns []net.Conn
		for i := range 8 {
			r := dialRESP(t, n.addr)
			var b strings.Builder
			for j := range 500 {
				b.WriteString("*3\r\n$3\r\nSET\r\n$4\r\nk" + itoa(int64(i)) + itoa(int64(j%10)) + "\r\n$1\r\nv\r\n")
			}
			r.raw(b.String())
			conns = append(conns, r.c)
		}
		n.stop(t)
		for _, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			// The end of the stream or a reset (writes left unread): the
			// node closed it; a timeout: it did not.
			if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection not closed by the shutdown: %v", err)
			}
		}
	})
}

// TestRESPClientListWhileOthersChange: CLIENT LIST reads what other
// connections show while they switch protocols and reset (run with -race).
func TestRESPClientListWhileOthersChange(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), mode)
		changer := dialRESP(t, n.addr)
		lister := dialRESP(t, n.addr)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 50 {
				lister.send("CLIENT LIST")
				line, err := lister.br.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "$") {
					t.Errorf("CLIENT LIST: %q %v", line, err)
					return
				}
				var size int64
				for _, ch := range line[1 : len(line)-2] {
					size = size*10 + int64(ch-'0')
				}
				if _, err := io.CopyN(io.Discard, lister.br, size+2); err != nil {
					t.Errorf("CLIENT LIST body: %v", err)
					return
				}
			}
		}()
		for range 50 {
			changer.send("HELLO 3")
			changer.send("RESET")
		}
		<-done
		changer.send("PING")
		for {
			line, err := changer.br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "+PONG\r\n" {
				break
			}
		}
	})
}

// TestRESPCommandTimedFromItsFirstBytes: a command must be whole within the
// read timeout of its first bytes, however slowly the rest trickles in, on
// the node's port and on -resp-address (array and inline commands); a
// connection idle between commands, or sending each command in pieces that
// each complete it in time, is not closed.
func TestRESPCommandTimedFromItsFirstBytes(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), func(c *Config) { mode(c); c.RESP.ReadTimeout = readTimeout })
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = n.srv.ServeRESP(lis) }()
		for _, tt := range []struct {
			name, addr, start string
		}{
			{"node port, array", n.addr, "*2\r\n$3\r\nGET\r\n$1000\r\n"},
			{"resp-address, array", lis.Addr().String(), "*2\r\n$3\r\nGET\r\n$1000\r\n"},
			{"resp-address, inline", lis.Addr().String(), "GET "},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := dialRESP(t, tt.addr)
				r.raw(tt.start)
				closed := make(chan struct{})
				go func() {
					_, _ = io.Copy(io.Discard, r.br) // until the server closes (or the dial's deadline)
					close(closed)
				}()
				// One byte every readTimeout/6 for 10 read timeouts: each
				// byte arrives well within the timeout of the one before.
				const bytes = 60
				for i := 0; ; i++ {
					select {
					case <-closed:
						return
					default:
					}
					if i == bytes {
						t.Fatalf("still open after %d bytes over %v (read timeout %v)", bytes, 10*readTimeout, readTimeout)
					}
					if _, err := r.c.Write([]byte("a")); err != nil {
						return // closed by the server
					}
					time.Sleep(readTimeout / 6)
				}
			})
		}
		t.Run("idle and piecewise commands stay", func(t *testing.T) {
			t.Parallel()
			r := dialRESP(t, lis.Addr().String())
			r.send("PING")
			r.expect("+PONG")
			time.Sleep(2 * readTimeout) // idle between commands
			r.send("PING")
			r.expect("+PONG")
			// Commands in two pieces each, for 3 read timeouts in all.
			for range 6 {
				r.raw("*1\r\n$4\r\nPI")
				time.Sleep(readTimeout / 2)
				r.raw("NG\r\n")
				r.expect("+PONG")
			}
		})
	})
}

package wire

import (
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

var updateDoc = flag.Bool("update-doc", false, "rewrite the hex examples in docs/protocol.md from the codec")

const protocolDoc = "../../docs/protocol.md"

// docExamples are the annotated hex examples of docs/protocol.md, produced
// by the codec. The test fails when the document and the codec disagree.
func docExamples() []struct {
	name  string
	frame []byte
} {
	kv := KeyValue{Key: []byte("user:1"), Value: []byte("John"), CreateRevision: 5, ModRevision: 7, Version: 2}
	return []struct {
		name  string
		frame []byte
	}{
		{"client-hello", AppendClientHello(nil, Version)},
		{"server-hello", AppendServerHello(nil, ServerHello{Version: Version, MaxFrameSize: DefaultMaxFrameSize, MaxInFlight: DefaultMaxInFlight})},
		{"ping-request", AppendRequest(nil, &Request{Op: OpPing, ID: 1, Payload: []byte("hi")})},
		{"put-request", AppendRequest(nil, &Request{Op: OpPut, ID: 2, Key: []byte("user:1"), Value: []byte("John")})},
		{"put-response", AppendResponse(nil, &Response{Op: OpPut, ID: 2, Revision: 7})},
		{"get-request", AppendRequest(nil, &Request{Op: OpGet, ID: 3, Key: []byte("user:1")})},
		{"get-response", AppendResponse(nil, &Response{Op: OpGet, ID: 3, Revision: 7, KV: kv})},
		{"get-not-found", AppendResponse(nil, &Response{Op: OpGet, ID: 4, Status: StatusNotFound, Payload: []byte("service: key not found")})},
		{"delete-request", AppendRequest(nil, &Request{Op: OpDelete, ID: 5, Flags: FlagPrefix, Key: []byte("user:")})},
		{"delete-response", AppendResponse(nil, &Response{Op: OpDelete, ID: 5, Revision: 8, Deleted: 1})},
		{"range-request", AppendRequest(nil, &Request{Op: OpRange, ID: 6, Flags: FlagSerializable, Key: []byte("a"), End: []byte("c"), Limit: 10})},
		{"range-response", AppendResponse(nil, &Response{Op: OpRange, ID: 6, Revision: 8, Count: 1, KVs: []KeyValue{{Key: []byte("b"), Value: []byte("1"), CreateRevision: 3, ModRevision: 3, Version: 1}}})},
		{"batch-request", AppendRequest(nil, &Request{Op: OpBatch, ID: 7, Ops: []BatchOp{{Type: BatchPut, Key: []byte("a"), Value: []byte("1")}, {Type: BatchDelete, Key: []byte("b")}}})},
		{"batch-response", AppendResponse(nil, &Response{Op: OpBatch, ID: 7, Revision: 9, Puts: 1, Deleted: 1})},
		{"txn-request", AppendRequest(nil, &Request{Op: OpTxn, ID: 8, Compares: []Compare{{Key: []byte("a"), Target: TargetVersion, Result: CompareEqual, Operand: 1}}, Ops: []BatchOp{{Type: BatchPut, Key: []byte("a"), Value: []byte("2")}}})},
		{"begin-unimplemented", AppendError(nil, OpBegin, 9, StatusUnimplemented, "no txn")},
		{"stats-request", AppendRequest(nil, &Request{Op: OpStats, ID: 10})},
		{"frame-too-large", AppendError(nil, OpError, 0, StatusResourceExhausted, "too large")},
	}
}

// annotate renders a frame as hex lines with a comment per field.
func annotate(name string, b []byte) string {
	var sb strings.Builder
	line := func(n int, what string) {
		sb.WriteString(fmt.Sprintf("%-36s # %s\n", spaced(b[:n]), what))
		b = b[n:]
	}
	sb.WriteString("example: " + name + "\n")
	if strings.HasSuffix(name, "hello") {
		line(4, `magic "KVDB"`)
		line(1, "version 1")
		if name == "client-hello" {
			line(3, "reserved")
			return sb.String()
		}
		line(1, "status 0 = OK")
		line(2, "reserved")
		line(4, fmt.Sprintf("max frame size %d", binary.BigEndian.Uint32(b)))
		line(4, fmt.Sprintf("max in flight %d", binary.BigEndian.Uint32(b)))
		return sb.String()
	}
	line(4, fmt.Sprintf("length %d", binary.BigEndian.Uint32(b)))
	op, st := Opcode(b[0]), Status(b[2])
	line(1, "opcode "+op.String())
	line(1, fmt.Sprintf("flags 0x%02x", b[0]))
	line(1, "status "+st.String())
	line(1, "reserved")
	line(8, fmt.Sprintf("request id %d", binary.BigEndian.Uint64(b)))
	isResp := strings.Contains(name, "response") || st != StatusOK || op == OpError
	i64 := func(what string) { line(8, fmt.Sprintf("%s %d", what, int64(binary.BigEndian.Uint64(b)))) }
	u32 := func(what string) int {
		n := int(binary.BigEndian.Uint32(b))
		line(4, fmt.Sprintf("%s %d", what, n))
		return n
	}
	str := func(what string, n int) {
		if n > 0 {
			line(n, fmt.Sprintf("%s %q", what, b[:n]))
		}
	}
	kvs := func() {
		str("key", u32("key length"))
		str("value", u32("value length"))
		i64("create revision")
		i64("mod revision")
		i64("version")
	}
	ops := func(what string) {
		n := u32(what + " count")
		for range n {
			t := BatchOpType(b[0])
			line(1, map[BatchOpType]string{BatchPut: "op type 1 = put", BatchDelete: "op type 2 = delete"}[t])
			str("key", u32("key length"))
			if t == BatchPut {
				str("value", u32("value length"))
			}
		}
	}
	switch {
	case st != StatusOK || op == OpError:
		str("message", len(b))
	case !isResp:
		switch op {
		case OpPing:
			str("payload", len(b))
		case OpGet:
			str("key", len(b))
		case OpPut:
			str("key", u32("key length"))
			str("value (rest of body)", len(b))
		case OpDelete:
			str("key", u32("key length"))
			str("range end (rest of body)", len(b))
		case OpRange:
			str("key", u32("key length"))
			str("range end", u32("range end length"))
			i64("limit")
		case OpBatch:
			ops("op")
		case OpTxn:
			n := u32("compare count")
			for range n {
				str("key", u32("key length"))
				line(1, fmt.Sprintf("target %d", b[0]))
				line(1, fmt.Sprintf("result %d", b[0]))
				i64("operand")
			}
			ops("success op")
			ops("failure op")
		}
	default:
		switch op {
		case OpPut:
			i64("revision")
		case OpGet:
			i64("revision")
			kvs()
		case OpDelete:
			i64("revision")
			i64("deleted")
			u32("previous key-value count")
		case OpRange:
			i64("revision")
			i64("count")
			line(1, "more 0")
			n := u32("key-value count")
			for range n {
				kvs()
			}
		case OpBatch:
			i64("revision")
			i64("puts")
			i64("deleted")
		}
	}
	if len(b) > 0 {
		line(len(b), "unannotated")
	}
	return sb.String()
}

func spaced(b []byte) string {
	h := hex.EncodeToString(b)
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, " ")
}

var exampleBlock = regexp.MustCompile("(?s)```text\nexample: ([a-z-]+)\n(.*?)```")

// TestProtocolDocExamples parses every example of docs/protocol.md and
// checks its bytes are what the codec produces (run with -update-doc to
// rewrite them after a deliberate change).
func TestProtocolDocExamples(t *testing.T) {
	doc, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, e := range docExamples() {
		want[e.name] = e.frame
	}
	if *updateDoc {
		out := exampleBlock.ReplaceAllStringFunc(string(doc), func(block string) string {
			name := exampleBlock.FindStringSubmatch(block)[1]
			if f, ok := want[name]; ok {
				return "```text\n" + annotate(name, f) + "```"
			}
			return block
		})
		if err := os.WriteFile(protocolDoc, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		doc = []byte(out)
	}
	seen := map[string]bool{}
	for _, m := range exampleBlock.FindAllStringSubmatch(string(doc), -1) {
		name := m[1]
		var hexText strings.Builder
		for _, l := range strings.Split(m[2], "\n") {
			l, _, _ = strings.Cut(l, "#")
			hexText.WriteString(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
		}
		got, err := hex.DecodeString(hexText.String())
		if err != nil {
			t.Fatalf("example %s: %v", name, err)
		}
		w, ok := want[name]
		if !ok {
			t.Fatalf("example %s in the document is not generated by the test", name)
		}
		if string(got) != string(w) {
			t.Errorf("example %s:\n doc   %x\n codec %x", name, got, w)
		}
		seen[name] = true
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("example %s missing from %s", name, protocolDoc)
		}
	}
}

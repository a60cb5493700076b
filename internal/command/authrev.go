package command

import "google.golang.org/protobuf/encoding/protowire"

// commandAuthRevisionField is Command.auth_revision.
const commandAuthRevisionField = 31

// StampAuthRevision returns data, an encoded Command, carrying the auth
// revision its caller's permissions were checked against: the field is put
// in front, which proto decoders accept in any order. A zero rev
// (authentication off) returns data itself.
func StampAuthRevision(data []byte, rev uint64) []byte {
	if rev == 0 {
		return data
	}
	out := make([]byte, 0, protowire.SizeTag(commandAuthRevisionField)+protowire.SizeVarint(rev)+len(data))
	out = protowire.AppendTag(out, commandAuthRevisionField, protowire.VarintType)
	out = protowire.AppendVarint(out, rev)
	return append(out, data...)
}

// splitAuthRevision reads the auth revision StampAuthRevision put in front
// of an encoded Command, returning it and the rest; a Command without one
// comes back whole with 0.
func splitAuthRevision(b []byte) (uint64, []byte) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != commandAuthRevisionField || typ != protowire.VarintType {
		return 0, b
	}
	rev, m := protowire.ConsumeVarint(b[n:])
	if m < 0 {
		return 0, b
	}
	return rev, b[n+m:]
}

package bench

import (
	"context"
	"testing"

	kvclient "github.com/kvdb/kvdb/client"
	"github.com/kvdb/kvdb/internal/service/servicetest"
)

// TestKVDBDriver runs every workload briefly against a real node over both
// transports: no request may fail.
func TestKVDBDriver(t *testing.T) {
	addr := servicetest.Start(t, nil)
	ctx := context.Background()
	for _, proto := range []kvclient.Protocol{kvclient.ProtocolGRPC, kvclient.ProtocolBinary} {
		d, err := NewKVDB(ctx, []string{addr}, proto, 2, false, Security{})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.EnableTxn(); err != nil {
			t.Fatal(err)
		}
		for _, op := range []Op{OpPut, OpGet, OpDelete, OpMixed, OpBatch, OpTxn} {
			res, err := Run(ctx, d, Config{Op: op, Total: 200, Clients: 4, Pipeline: 4, Keys: 100, ValueSize: 32, KeyPrefix: "bt/"})
			if err != nil {
				t.Fatalf("proto %d op %s: %v", proto, op, err)
			}
			if res.Errors != 0 || res.Requests != 200 {
				t.Errorf("proto %d op %s: requests=%d errors=%v", proto, op, res.Requests, res.ErrorsByCode)
			}
		}
		d.Close()
	}
}

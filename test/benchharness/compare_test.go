package main

import "testing"

func TestKeptSections(t *testing.T) {
	prev := "# KVDB beside Redis and etcd\n\nGenerated on day 1.\n\n## Machine\n\nold machine\n\n" +
		"## Results\n\nold table\n\n## Event loops\n\nby hand 1\n\n## Throughput against connections (PUT)\n\nold chart\n\n" +
		"## Target rows\n\nby hand 2\n### sub\nmore\n"
	generated := "# KVDB beside Redis and etcd\n\nGenerated on day 2.\n\n## Machine\n\nnew machine\n\n## Results\n\nnew table\n\n" +
		"## Throughput against connections (PUT)\n\nnew chart\n"
	want := "\n## Event loops\n\nby hand 1\n\n\n## Target rows\n\nby hand 2\n### sub\nmore\n"
	if got := keptSections(prev, generated); got != want {
		t.Fatalf("keptSections:\n%q\nwant\n%q", got, want)
	}
	if got := keptSections("", generated); got != "\n" {
		t.Fatalf("keptSections of an empty report: %q", got)
	}
}

package store

import (
	"sort"
	"testing"
	"time"
)

func TestNewIDSortsByTimeAndIsUnique(t *testing.T) {
	base := time.Date(2026, 1, 15, 14, 30, 0, 0, time.UTC)
	seen := map[string]bool{}
	var ids []string
	for i := 0; i < 20000; i++ {
		id := NewID("msg_", base.Add(time.Duration(i/10)*time.Millisecond))
		if seen[id] || len(id) != 30 {
			t.Fatalf("id %q repeated or malformed", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	for i := 10; i < len(ids); i += 10 {
		if ids[i] <= ids[i-10] {
			t.Fatalf("%s (later) sorts before %s", ids[i], ids[i-10])
		}
	}
	if !sort.StringsAreSorted([]string{NewID("x", base), NewID("x", base.Add(time.Millisecond))}) {
		t.Fatal("ids do not sort by time")
	}
}

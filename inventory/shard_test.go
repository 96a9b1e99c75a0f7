package inventory

import (
	"fmt"
	"math/rand"
	"testing"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		i, n int
		ok   bool
	}{{"1/1", 1, 1, true}, {"2/4", 2, 4, true}, {" 3 / 3 ", 3, 3, true}, {"0/4", 0, 0, false}, {"5/4", 0, 0, false}, {"1/0", 0, 0, false}, {"a/b", 0, 0, false}, {"2", 0, 0, false}, {"1/10001", 0, 0, false}, {"-1/2", 0, 0, false}} {
		i, n, err := ParseShard(tc.in)
		if (err == nil) != tc.ok || i != tc.i || n != tc.n {
			t.Errorf("ParseShard(%q) = %d, %d, %v", tc.in, i, n, err)
		}
	}
}

// TestShard: the shards cover every host exactly once, a host's shard does
// not depend on the order or on the other hosts, and shards are balanced.
func TestShard(t *testing.T) {
	var hosts []*Host
	for i := 0; i < 1000; i++ {
		hosts = append(hosts, &Host{Name: fmt.Sprintf("web%03d.example", i)})
	}
	for _, n := range []int{1, 2, 3, 7, 16} {
		seen := map[string]int{}
		for i := 1; i <= n; i++ {
			part := Shard(hosts, i, n)
			if len(part) < len(hosts)/n/2 {
				t.Errorf("shard %d/%d holds %d of %d hosts: unbalanced", i, n, len(part), len(hosts))
			}
			for _, h := range part {
				seen[h.Name]++
			}
		}
		for _, h := range hosts {
			if seen[h.Name] != 1 {
				t.Fatalf("n=%d: %s is in %d shards", n, h.Name, seen[h.Name])
			}
		}
		// reordered, and with half the hosts gone: same shard per host
		shuffled := append([]*Host(nil), hosts[:500]...)
		rand.New(rand.NewSource(1)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		for i := 1; i <= n; i++ {
			for _, h := range Shard(shuffled, i, n) {
				if ShardOf(h.Name, n) != i {
					t.Fatalf("%s moved shard", h.Name)
				}
			}
		}
	}
	if ShardOf("h01", 4) != ShardOf("h01", 4) || ShardOf("web001.example", 7) != 1+int(fnvOf("web001.example")%7) {
		t.Fatal("ShardOf is not FNV-1a of the name")
	}
}

func fnvOf(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

package inventory

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// MaxShards bounds N in --shard I/N.
const MaxShards = 10000

// ParseShard reads "I/N" (1 <= I <= N): shard I of N.
func ParseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if ok {
		i, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			n, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil || n < 1 || n > MaxShards || i < 1 || i > n {
		return 0, 0, fmt.Errorf("--shard %q: want I/N with 1 <= I <= N <= %d, e.g. 2/4", s, MaxShards)
	}
	return i, n, nil
}

// ShardOf is the shard (1..n) a host name belongs to: a hash of the name
// alone, so a host stays in its shard however the inventory is ordered,
// whichever other hosts are added or removed, and on every machine.
func ShardOf(name string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int(h.Sum64()%uint64(n)) + 1
}

// Shard keeps the hosts of shard i of n, in their order. The n shards of
// one host list cover it exactly once.
func Shard(hosts []*Host, i, n int) []*Host {
	var out []*Host
	for _, h := range hosts {
		if ShardOf(h.Name, n) == i {
			out = append(out, h)
		}
	}
	return out
}

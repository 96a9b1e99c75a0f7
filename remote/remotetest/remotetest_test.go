package remotetest_test

import (
	"testing"
	"time"

	"github.com/lifeline-dev/lifeline/remote"
	"github.com/lifeline-dev/lifeline/remote/remotetest"
)

func TestConformanceMock(t *testing.T) {
	remotetest.Conformance(t, func(t *testing.T, cases []remotetest.Case) remote.Runner {
		m := remotetest.New(t, "mock")
		for _, c := range cases {
			r := remotetest.Reply{Stdout: c.Stdout, Stderr: c.Stderr, Status: c.Status}
			if c.Cancel {
				r.Delay = time.Hour
			}
			m.Expect(c.Command, r)
		}
		return m
	})
}

func TestConformanceLocal(t *testing.T) {
	remotetest.Conformance(t, func(t *testing.T, _ []remotetest.Case) remote.Runner {
		return remotetest.NewLocal("local")
	})
}

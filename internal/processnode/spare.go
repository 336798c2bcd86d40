package processnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/podinit"
	"github.com/agentsandbox/go-sandboxtest/internal/syncbuf"
)

// A pod init is launched (its namespaces created, its package initialisers
// run, its cgroups joined, its veth plugged, its runtime server started
// warm: podinit.Launch), then given its pod (limits, address, filesystem
// view: use). For python-runtime pods the node launches the next init
// ahead of need, as a spare, shortly after each such pod's start, with an
// address of its own already configured in its network namespace: the
// next one then waits only for its own part. A pod takes the spare when
// its Prep (user, limits, warm role) is the spare's, else starts as
// before; a pod created while the spare is ready takes its address too
// (CreatePod), one that finds it still being made waits for it and
// readdresses it. The spare dies with the node: Pdeathsig for a killed
// node, stopAll for a stopped one; an unused spare's address is released.

// launchedInit is a pod init that has no pod yet, or has just been given one.
type launchedInit struct {
	prep   podinit.Prep
	ip     string // a spare's own address, until a pod takes it over
	dir    string // a spare's directory, holding the root its view was prepared on
	sb     *podinit.Sandbox
	group  *podGroup // nil without cgroup limits
	stderr *syncbuf.Buffer
}

// launch starts a pod init prepared for prep, in new cgroups named id. A
// spare gets ip, configured at once on a cluster network, and the
// pod-independent part of its view, built on a root of its own; a pod's
// init gets both in use.
func (p *Provider) launch(prep podinit.Prep, id, ip string) (*launchedInit, error) {
	li := &launchedInit{prep: prep, ip: ip, stderr: &syncbuf.Buffer{}}
	var viewRoot string
	if ip != "" && prep.Isolated {
		li.dir = filepath.Join(p.cfg.Dir, "spares", id)
		viewRoot = filepath.Join(li.dir, "root")
		if err := os.MkdirAll(viewRoot, 0o755); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (*launchedInit, error) {
		li.removeGroup()
		li.removeDir()
		return nil, li.withStderr(err)
	}
	var join *podinit.Join
	if p.limits != nil && !p.limits.rlim {
		g, err := p.limits.create(id)
		if err != nil {
			li.removeDir()
			return nil, err
		}
		li.group = g
		if join, err = g.join(); err != nil {
			return fail(err)
		}
	}
	var err error
	if p.net != nil {
		li.sb, err = p.net.Launch(prep, viewRoot, join, li.stderr)
	} else {
		li.sb, err = podinit.Launch(prep, viewRoot, join, li.stderr)
	}
	if err != nil {
		return fail(err)
	}
	if ip != "" && p.net != nil {
		if err := li.sb.Attach(p.podNet(ip)); err != nil {
			return fail(err)
		}
	}
	return li, nil
}

// podNet is the address ip on the node's cluster network.
func (p *Provider) podNet(ip string) podinit.PodNet {
	ones, _ := p.net.CIDR().Mask.Size()
	return podinit.PodNet{IP: ip, PrefixLen: ones, Gateway: p.net.Gateway().String()}
}

// discard kills a spare no pod took, and frees its address and directory.
func (p *Provider) discard(li *launchedInit) {
	li.kill()
	p.releaseSpare(li)
}

// releaseSpare frees the spare's own address unless a pod took it over,
// and removes its directory: the root its view was prepared on is no
// mount point any more once the init has pivoted into it, or has ended.
func (p *Provider) releaseSpare(li *launchedInit) {
	if li.ip != "" {
		p.ips.release(li.ip)
		li.ip = ""
	}
	li.removeDir()
}

func (li *launchedInit) removeDir() {
	if li.dir != "" {
		_ = os.RemoveAll(li.dir)
		li.dir = ""
	}
}

// use gives the init its pod: the pod's limits, then its config (address
// and view). On error the init is gone.
func (li *launchedInit) use(cfg podinit.Config, containers []corev1.Container) error {
	if li.group != nil {
		if err := li.group.limit(containers); err != nil {
			li.kill()
			return err
		}
	}
	if err := li.sb.Configure(cfg); err != nil {
		li.removeGroup()
		return li.withStderr(err)
	}
	return nil
}

func (li *launchedInit) kill() {
	li.sb.Kill()
	li.removeGroup()
	li.removeDir()
}

func (li *launchedInit) removeGroup() {
	if li.group != nil {
		li.group.remove()
	}
}

// withStderr adds what the init said before it ended.
func (li *launchedInit) withStderr(err error) error {
	if s := strings.TrimSpace(li.stderr.String()); s != "" {
		return fmt.Errorf("%w: %s", err, s)
	}
	return err
}

// spareDelay is how long after a pod's start the next spare is made. That
// pod's status is then still on its way through kube-apiserver and the
// controllers (some 50 ms), and on 2 cores making a spare meanwhile (two
// execs of the node binary, and cgroup moves, which hold up every fork on
// the machine) slowed the claim's Ready by about as much as the spare saved
// (see BENCHMARKS.md).
const spareDelay = 150 * time.Millisecond

// spares holds the node's spare init.
type spares struct {
	mu      sync.Mutex
	ready   *launchedInit // at most one
	pending *pending      // the one being made, if any
	making  sync.WaitGroup
	stopped bool          // by stopSpares: none is made any more
	stop    chan struct{} // closed by stopSpares
	n       int           // names the spares' cgroups
}

// pending is a spare being made. A pod that wants it closes hurry, which
// ends its delay, and waits for done: it comes no later than a new init
// would, and no second init competes with it.
type pending struct {
	prep    podinit.Prep
	hurry   chan struct{}
	hurried bool
	done    chan struct{} // closed once it is ready, or failed
}

// startInit starts the pod's init: the spare it took at creation, or the
// one being made when it fits, else a new one. A pod with a warm role has
// the next spare made spareDelay after its start.
func (p *Provider) startInit(r *podRun, cfg podinit.Config, containers []corev1.Container) (*podinit.Sandbox, *podGroup, error) {
	r.mu.Lock()
	li := r.spare
	r.spare = nil
	r.mu.Unlock()
	if cfg.Warm != "" {
		defer p.makeSpare(cfg.Prep)
		if li == nil {
			li = p.takeSpare(cfg.Prep, true)
		}
	}
	if li != nil {
		err := li.use(cfg, containers) // readdresses a spare taken after the pod's creation
		p.releaseSpare(li)
		if err == nil {
			return li.sb, li.group, nil
		}
		// A spare that failed is dropped; a new init says what is wrong.
	}
	li, err := p.launch(cfg.Prep, string(r.pod.UID), "")
	if err != nil {
		return nil, nil, err
	}
	if err := li.use(cfg, containers); err != nil {
		return nil, nil, err
	}
	return li.sb, li.group, nil
}

// takeSpare returns the spare if it was prepared as prep, waiting for one
// being made when wait is set.
func (p *Provider) takeSpare(prep podinit.Prep, wait bool) *launchedInit {
	s := &p.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	if pd := s.pending; wait && s.ready == nil && pd != nil && pd.prep == prep {
		if !pd.hurried {
			close(pd.hurry)
			pd.hurried = true
		}
		s.mu.Unlock()
		<-pd.done
		s.mu.Lock()
	}
	li := s.ready
	if li == nil || li.prep != prep {
		return nil
	}
	s.ready = nil
	return li
}

// readySpare takes the ready spare if it was prepared as a pod's init
// prepared as prep, without waiting for one being made.
func (p *Provider) readySpare(prep podinit.Prep) *launchedInit {
	if p.sandboxErr != nil || !p.isolated {
		return nil
	}
	if prep.Warm == "" {
		return nil
	}
	return p.takeSpare(prep, false)
}

// makeSpare launches a spare for prep in the background, after spareDelay,
// unless one is there or under way; a spare of another Prep is replaced.
func (p *Provider) makeSpare(prep podinit.Prep) {
	s := &p.spares
	s.mu.Lock()
	if s.stopped || s.pending != nil || (s.ready != nil && s.ready.prep == prep) {
		s.mu.Unlock()
		return
	}
	old := s.ready
	s.ready = nil
	if s.stop == nil {
		s.stop = make(chan struct{})
	}
	stop := s.stop
	pd := &pending{prep: prep, hurry: make(chan struct{}), done: make(chan struct{})}
	s.pending = pd
	s.n++
	id := fmt.Sprintf("spare-%d", s.n)
	s.making.Add(1)
	s.mu.Unlock()
	if old != nil {
		p.discard(old)
	}
	go func() {
		defer s.making.Done()
		var li *launchedInit
		select {
		case <-time.After(spareDelay):
		case <-pd.hurry:
		case <-stop:
		}
		if !p.sparesStopped() {
			ip, err := p.ips.next()
			if err == nil {
				if li, err = p.launch(prep, id, ip); err != nil {
					p.ips.release(ip)
				}
			}
			if err != nil {
				fmt.Fprintf(p.cfg.Log, "sandboxtest: node %s: making a spare pod init: %v\n", p.cfg.Name, err)
			}
		}
		s.mu.Lock()
		s.pending = nil
		if li != nil && !s.stopped {
			s.ready, li = li, nil
		}
		s.mu.Unlock()
		close(pd.done)
		if li != nil {
			p.discard(li)
		}
	}()
}

func (p *Provider) sparesStopped() bool {
	p.spares.mu.Lock()
	defer p.spares.mu.Unlock()
	return p.spares.stopped
}

// stopSpares kills the spare and waits for the one under way, if any, to
// be made and killed; none is made after.
func (p *Provider) stopSpares() {
	s := &p.spares
	s.mu.Lock()
	if !s.stopped && s.stop != nil {
		close(s.stop)
	}
	s.stopped = true
	li := s.ready
	s.ready = nil
	s.mu.Unlock()
	if li != nil {
		p.discard(li)
	}
	s.making.Wait()
}

// sparePid is the host pid of the spare's init and its address, 0 and ""
// when there is none.
func (p *Provider) sparePid() (int, string) {
	p.spares.mu.Lock()
	defer p.spares.mu.Unlock()
	if p.spares.ready == nil {
		return 0, ""
	}
	return p.spares.ready.sb.Pid(), p.spares.ready.ip
}

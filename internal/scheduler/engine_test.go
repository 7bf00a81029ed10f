package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/clock"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/netguard"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/store/pgstore"
	"github.com/agentplane/agentplane/internal/store/sqlitestore"
	"github.com/agentplane/agentplane/internal/testenv"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func backends() []string {
	if os.Getenv(testenv.PostgresURLEnv) != "" || testenv.InCI() {
		return []string{"sqlite", "postgres"}
	}
	return []string{"sqlite"}
}

// agent is a scripted A2A 0.3 agent: reply decides each answer (nil: a
// message "ok"); hold makes it wait until released.
type agent struct {
	srv     *httptest.Server
	mu      sync.Mutex
	ids     []string // messageIds received
	reply   func(n int) (status int, body string)
	hold    chan struct{}
	arrived chan struct{}
}

func newAgent(t *testing.T) *agent {
	a := &agent{arrived: make(chan struct{}, 100)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			ID     json.RawMessage
			Params struct{ Message struct{ MessageID string } }
		}
		_ = json.NewDecoder(r.Body).Decode(&env)
		a.mu.Lock()
		a.ids = append(a.ids, env.Params.Message.MessageID)
		n, hold, reply := len(a.ids), a.hold, a.reply
		a.mu.Unlock()
		select {
		case a.arrived <- struct{}{}:
		default:
		}
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		status, body := 200, `{"kind":"message","role":"agent","parts":[{"kind":"text","text":"ok"}]}`
		if reply != nil {
			status, body = reply(n)
		}
		if status == -1 { // drop the connection after reading the request
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		if status != 200 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, env.ID, body)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *agent) received() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ids...)
}

type bundle struct {
	ctx    context.Context
	clk    *clock.Fake
	st     store.Store
	reopen func() store.Store
	gw     *gateway.Gateway
	e      *Engine
	svc    *Service
	ws     string
}

var t0 = time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC)

func setup(t *testing.T, backend string, agentURL string) *bundle {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(t0)
	var open func() store.Store
	if backend == "postgres" {
		url := testenv.PostgresSchema(t)
		open = func() store.Store {
			s, err := pgstore.Open(ctx, url, store.Options{Now: clk.Now})
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return s
		}
	} else {
		dir := t.TempDir()
		open = func() store.Store {
			s, err := sqlitestore.Open(ctx, dir, store.Options{Now: clk.Now})
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return s
		}
	}
	st := open()
	require.NoError(t, st.Migrate(ctx))
	b := &bundle{ctx: ctx, clk: clk, st: st, reopen: open}
	b.gw, b.e = b.engine(st, "replica-1")
	b.svc = NewService(st, b.e)
	b.ws = uuid.NewString()
	require.NoError(t, st.InTx(ctx, func(tx store.Tx) error {
		return tx.InsertWorkspace(ctx, store.Workspace{ID: b.ws, Name: "Auditor", Status: store.StatusOnline, URL: agentURL,
			MaxConcurrentTasks: 1, OutboundSecret: []byte("0123456789abcdef0123456789abcdef"), CreatedAt: t0, UpdatedAt: t0, LastHeartbeatAt: t0})
	}))
	return b
}

func (b *bundle) engine(st store.Store, holder string) (*gateway.Gateway, *Engine) {
	gw := gateway.New(gateway.Deps{Store: st, Client: netguard.New(netguard.Options{AllowPrivate: true}).Client(0), Clock: b.clk, Log: quiet})
	return gw, NewEngine(Options{Store: st, Clock: b.clk, Log: quiet, Gateway: gw, Holder: holder, Workers: 4})
}

// workers runs the engine's worker pool for the test (without the
// liveness beat, so that the only timers on the fake clock are the ones a
// test waits for).
func (b *bundle) workers(t *testing.T, e *Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.startWorkers(ctx)
	t.Cleanup(func() { cancel(); wait() })
}

func (b *bundle) create(t *testing.T, body string) string {
	t.Helper()
	v, err := b.svc.Create(b.ctx, "admin:test", b.ws, []byte(body))
	require.NoError(t, err)
	return v.ID
}

func (b *bundle) claim(t *testing.T, e *Engine) {
	t.Helper()
	_, err := e.claimOnce(b.ctx)
	require.NoError(t, err)
}

func (b *bundle) history(t *testing.T, sid string) []store.ScheduleRun {
	t.Helper()
	runs, err := b.st.ListRuns(b.ctx, store.RunFilter{ScheduleID: sid, Limit: 1000})
	require.NoError(t, err)
	return runs
}

// waitStatus waits (bounded) until the slot's run reaches status.
func (b *bundle) waitStatus(t *testing.T, sid string, slot time.Time, status string) store.ScheduleRun {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range b.history(t, sid) {
			if r.SlotTime.Equal(slot) && r.Status == status {
				return r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("slot %s never reached %s; history: %+v", slot, status, b.history(t, sid))
	return store.ScheduleRun{}
}

func (b *bundle) state(t *testing.T, sid string) State {
	sc, err := b.st.GetSchedule(b.ctx, sid)
	require.NoError(t, err)
	st, err := decode[State](sc.State)
	require.NoError(t, err)
	return st
}

func TestEngine(t *testing.T) {
	t.Parallel()
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()

			t.Run("OverlapSkipsWhileTheRunRuns", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				a.hold = make(chan struct{})
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				slot1 := t0.Add(time.Minute)
				b.clk.Set(slot1.Add(50 * time.Millisecond))
				b.claim(t, b.e)
				<-a.arrived
				b.waitStatus(t, sid, slot1, store.RunRunning)

				slot2 := slot1.Add(time.Minute)
				b.clk.Set(slot2.Add(10 * time.Millisecond))
				b.claim(t, b.e)
				sk := b.waitStatus(t, sid, slot2, store.RunSkipped)
				require.Equal(t, ReasonOverlap, sk.Reason)

				close(a.hold)
				r := b.waitStatus(t, sid, slot1, store.RunSucceeded)
				require.Equal(t, store.TriggerSchedule, r.Trigger)
				require.Equal(t, int64(50), r.StartedAt.Sub(r.SlotTime).Milliseconds(), "lateness: slot to first dispatch")
				require.Equal(t, "ok", r.ResponsePreview)
				st := b.state(t, sid)
				require.Equal(t, int64(1), st.RunCount)
				require.Equal(t, int64(1), st.SkippedCount)
				require.Len(t, a.received(), 1)
			})

			t.Run("CatchupAfterDowntimeRecordsMissedRange", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"hourly","cron_expr":"0 * * * *","prompt":"audit"}`)
				b.clk.Set(t0.Add(5*time.Hour + 10*time.Second)) // every replica was down
				b.claim(t, b.e)
				last := t0.Add(5 * time.Hour)
				b.waitStatus(t, sid, last, store.RunSucceeded)
				m := b.waitStatus(t, sid, t0.Add(time.Hour), store.RunMissed)
				require.Equal(t, 4, m.MissedCount)
				require.Equal(t, t0.Add(4*time.Hour), m.MissedUntil)
				require.Equal(t, ReasonSuperseded, m.Reason)
				st := b.state(t, sid)
				require.Equal(t, int64(4), st.MissedCount)
				require.Equal(t, int64(1), st.RunCount)
			})

			t.Run("BusyWorkspaceIsSkippedNotFailed", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit","busy_wait":"5s"}`)
				slot := t0.Add(time.Minute)
				b.clk.Set(slot)
				held, err := b.gw.Acquire(b.ctx, b.ws, store.LeaseA2A, "someone", 0) // live for 30 s from the slot
				require.NoError(t, err)
				timers := b.clk.Timers()
				b.claim(t, b.e)
				require.True(t, b.clk.WaitForTimers(timers+2, 10*time.Second), "the run waits for capacity on the clock")
				for range 20 { // 20 × 250 ms looks at the slots, then busy_wait ends
					b.clk.Advance(250 * time.Millisecond)
				}
				r := b.waitStatus(t, sid, slot, store.RunSkipped)
				require.Equal(t, ReasonBusy, r.Reason)
				require.Empty(t, a.received())
				require.Equal(t, int64(0), b.state(t, sid).FailureCount)
				require.NoError(t, b.gw.Release(b.ctx, held))
			})

			t.Run("PausedWorkspaceIsSkipped", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				require.NoError(t, b.st.InTx(b.ctx, func(tx store.Tx) error {
					w, err := tx.GetWorkspace(b.ctx, b.ws)
					require.NoError(t, err)
					w.Status = store.StatusPaused
					_, err = tx.UpdateWorkspace(b.ctx, w)
					return err
				}))
				b.clk.Set(t0.Add(time.Minute))
				b.claim(t, b.e)
				r := b.waitStatus(t, sid, t0.Add(time.Minute), store.RunSkipped)
				require.Equal(t, ReasonWorkspacePaused, r.Reason)
			})

			t.Run("RetriesOnlyWhatTheAgentRefused", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				a.reply = func(n int) (int, string) {
					if n < 3 {
						return 503, "" // with Retry-After: 1
					}
					return 200, `{"kind":"message","role":"agent","parts":[{"kind":"text","text":"third time"}]}`
				}
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				slot := t0.Add(time.Minute)
				b.clk.Set(slot)
				timers := b.clk.Timers()
				b.claim(t, b.e)
				for range 2 { // two Retry-After waits on the clock
					require.True(t, b.clk.WaitForTimers(timers+1, 10*time.Second))
					b.clk.Advance(time.Second)
				}
				r := b.waitStatus(t, sid, slot, store.RunSucceeded)
				require.Equal(t, 3, r.Attempt)
				require.Equal(t, []string{messageID(r.ID, 1), messageID(r.ID, 2), messageID(r.ID, 3)}, a.received(), "each attempt its own messageId")
			})

			t.Run("BrokenAfterSendingIsFailedNeverResent", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				a.reply = func(int) (int, string) { return -1, "" }
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				b.clk.Set(t0.Add(time.Minute))
				b.claim(t, b.e)
				r := b.waitStatus(t, sid, t0.Add(time.Minute), store.RunFailed)
				require.Equal(t, 1, r.Attempt)
				require.Len(t, a.received(), 1)
				st := b.state(t, sid)
				require.Equal(t, int64(1), st.ConsecutiveFailures)
				require.NotEmpty(t, st.LastError)
			})

			t.Run("TaskStatesMapToRunStatuses", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				a.reply = func(n int) (int, string) {
					if n == 1 {
						return 200, `{"kind":"task","id":"t1","status":{"state":"input-required"}}`
					}
					return 200, `{"kind":"message","role":"agent","parts":[]}`
				}
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				b.clk.Set(t0.Add(time.Minute))
				b.claim(t, b.e)
				r := b.waitStatus(t, sid, t0.Add(time.Minute), store.RunFailed)
				require.Equal(t, ReasonNeedsInput, r.Reason)
				require.Equal(t, "t1", r.TaskID)
				b.clk.Set(t0.Add(2 * time.Minute))
				b.claim(t, b.e)
				r = b.waitStatus(t, sid, t0.Add(2*time.Minute), store.RunSucceeded)
				require.True(t, r.EmptyReply)
				require.Equal(t, int64(1), b.state(t, sid).EmptyStreak)
			})

			t.Run("TimeoutCancelsTheAgentCall", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				a.hold = make(chan struct{}) // never released: the agent hangs
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit","timeout":"1s"}`)
				b.clk.Set(t0.Add(time.Minute))
				b.claim(t, b.e)
				r := b.waitStatus(t, sid, t0.Add(time.Minute), store.RunTimedOut)
				require.Equal(t, 1, r.Attempt)
			})

			t.Run("DeadReplicasRunsAbandonedOrTakenOver", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"0 0 1 1 *","prompt":"audit"}`)
				now := b.clk.Now()
				sent := store.ScheduleRun{ID: newRunID(), ScheduleID: sid, WorkspaceID: b.ws, SlotTime: t0.Add(-time.Hour), ScheduledTime: t0.Add(-time.Hour),
					Trigger: store.TriggerManual, Status: store.RunRunning, Attempt: 1, StartedAt: now, ClaimedBy: "dead", LeaseExpiresAt: now.Add(RunLeaseTTL), CreatedAt: now}
				never := sent
				never.ID, never.Status, never.Attempt, never.SlotTime = newRunID(), store.RunPending, 0, t0.Add(-2*time.Hour)
				require.NoError(t, b.st.InTx(b.ctx, func(tx store.Tx) error {
					if _, err := tx.InsertRun(b.ctx, sent); err != nil {
						return err
					}
					_, err := tx.InsertRun(b.ctx, never)
					return err
				}))
				require.NoError(t, b.e.leasePass(b.ctx))
				require.Empty(t, a.received(), "leases still live: nothing happens")
				b.clk.Advance(RunLeaseTTL)
				require.NoError(t, b.e.leasePass(b.ctx))
				r := b.waitStatus(t, sid, sent.SlotTime, store.RunAbandoned)
				require.Contains(t, r.ErrorDetail, "dead")
				b.waitStatus(t, sid, never.SlotTime, store.RunSucceeded)
				require.Len(t, a.received(), 1, "only the run that never left was sent")
				evs, err := b.st.ListEvents(b.ctx, store.EventFilter{Type: "CRON_FAILED"})
				require.NoError(t, err)
				require.Len(t, evs, 1)
				require.JSONEq(t, fmt.Sprintf(`{"schedule_id":%q,"run_id":%q,"slot_time":%q,"status":"abandoned","error":%q}`,
					sid, sent.ID, sent.SlotTime.Format(time.RFC3339), r.ErrorDetail), string(evs[0].Payload))
			})

			t.Run("CancelRunCancelsTheAgentsTask", func(t *testing.T) {
				t.Parallel()
				methods := make(chan string, 16)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var env struct {
						ID     json.RawMessage
						Method string
						Params struct{ ID string }
					}
					_ = json.NewDecoder(r.Body).Decode(&env)
					methods <- env.Method + " " + env.Params.ID
					state := "working"
					if env.Method == "tasks/cancel" {
						state = "canceled"
					}
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"kind":"task","id":"t-7","status":{"state":%q}}}`, env.ID, state)
				}))
				t.Cleanup(srv.Close)
				b := setup(t, backend, srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				slot := t0.Add(time.Minute)
				b.clk.Set(slot)
				timers := b.clk.Timers()
				b.claim(t, b.e)
				require.Equal(t, "message/send ", next(t, methods))
				require.True(t, b.clk.WaitForTimers(timers+1, 10*time.Second), "polling the working task")
				run := b.waitStatus(t, sid, slot, store.RunRunning)
				_, err := b.svc.CancelRun(b.ctx, "admin:test", b.ws, sid, run.ID)
				require.NoError(t, err)
				require.Equal(t, "tasks/cancel t-7", next(t, methods), "the agent is told to cancel its task")
				r := b.waitStatus(t, sid, slot, store.RunCancelled)
				require.Contains(t, r.ErrorDetail, "admin:test")
				evs, err := b.st.ListEvents(b.ctx, store.EventFilter{Type: "CRON_FAILED"})
				require.NoError(t, err)
				require.Len(t, evs, 1, "one terminal event")
			})

			t.Run("PollRefusedForNowIsNotAResend", func(t *testing.T) {
				t.Parallel()
				methods := make(chan string, 16)
				var polls int
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var env struct {
						ID     json.RawMessage
						Method string
					}
					_ = json.NewDecoder(r.Body).Decode(&env)
					methods <- env.Method
					state := "working"
					if env.Method == "tasks/get" {
						polls++
						if polls == 1 { // the agent is briefly overloaded
							w.Header().Set("Retry-After", "1")
							w.WriteHeader(http.StatusServiceUnavailable)
							return
						}
						state = "completed"
					}
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"kind":"task","id":"t-1","status":{"state":%q}}}`, env.ID, state)
				}))
				t.Cleanup(srv.Close)
				b := setup(t, backend, srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				slot := t0.Add(time.Minute)
				b.clk.Set(slot)
				timers := b.clk.Timers()
				b.claim(t, b.e)
				require.Equal(t, "message/send", next(t, methods))
				for range 2 { // two polls: refused, then completed
					require.True(t, b.clk.WaitForTimers(timers+1, 10*time.Second))
					b.clk.Advance(5 * time.Second)
					require.Equal(t, "tasks/get", next(t, methods))
				}
				r := b.waitStatus(t, sid, slot, store.RunSucceeded)
				require.Equal(t, 1, r.Attempt, "the message was sent once")
				require.Empty(t, methods)
			})

			t.Run("OfflineButLeasedWorkspaceStillRuns", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				slot := t0.Add(time.Minute)
				b.clk.Set(slot)
				require.NoError(t, b.st.InTx(b.ctx, func(tx store.Tx) error {
					w, err := tx.GetWorkspace(b.ctx, b.ws)
					require.NoError(t, err)
					w.Status, w.MaxConcurrentTasks = store.StatusOffline, 2
					_, err = tx.UpdateWorkspace(b.ctx, w)
					return err
				}))
				// A long call holds a lease: the agent is evidently there (SPEC §7.3).
				held, err := b.gw.Acquire(b.ctx, b.ws, store.LeaseA2A, "long call", 0)
				require.NoError(t, err)
				b.claim(t, b.e)
				b.waitStatus(t, sid, slot, store.RunSucceeded)
				require.Len(t, a.received(), 1)
				require.NoError(t, b.gw.Release(b.ctx, held))
			})

			t.Run("DeletedWhileWaitingForCapacityNeverFires", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				b.workers(t, b.e)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit","busy_wait":"5m"}`)
				slot := t0.Add(time.Minute)
				b.clk.Set(slot)
				held, err := b.gw.Acquire(b.ctx, b.ws, store.LeaseA2A, "someone", 0)
				require.NoError(t, err)
				timers := b.clk.Timers()
				b.claim(t, b.e)
				require.True(t, b.clk.WaitForTimers(timers+2, 10*time.Second), "waiting for capacity")
				require.NoError(t, b.svc.Delete(b.ctx, "admin:test", b.ws, sid))
				require.NoError(t, b.gw.Release(b.ctx, held)) // wakes the waiting run
				r := b.waitStatus(t, sid, slot, store.RunSkipped)
				require.Equal(t, ReasonScheduleDeleted, r.Reason)
				require.Empty(t, a.received(), "nothing fires after a delete")
			})

			t.Run("RemovedWorkspaceStopsItsSchedules", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit"}`)
				require.NoError(t, b.st.InTx(b.ctx, func(tx store.Tx) error {
					w, err := tx.GetWorkspace(b.ctx, b.ws)
					require.NoError(t, err)
					w.Status = store.StatusRemoved
					_, err = tx.UpdateWorkspace(b.ctx, w)
					return err
				}))
				b.clk.Set(t0.Add(time.Minute))
				b.claim(t, b.e)
				require.Empty(t, b.history(t, sid), "no run, no skip: the schedule is stopped")
				sc, err := b.st.GetSchedule(b.ctx, sid)
				require.NoError(t, err)
				require.False(t, sc.Enabled)
				require.True(t, sc.NextRunAt.IsZero(), "never due again")
				_, ok, err := b.st.NextDue(b.ctx)
				require.NoError(t, err)
				require.False(t, ok)
			})

			t.Run("ShutdownHandsBackRunsNotYetSent", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				sid := b.create(t, `{"name":"audit","cron_expr":"* * * * *","prompt":"audit","busy_wait":"5m"}`)
				slot := t0.Add(time.Minute)
				b.clk.Set(slot)
				held, err := b.gw.Acquire(b.ctx, b.ws, store.LeaseA2A, "someone", 0)
				require.NoError(t, err)
				// Replica 1 claims the slot; its run waits for capacity.
				loop, stop := context.WithCancel(b.ctx)
				timers := b.clk.Timers()
				_, err = b.e.claimOnce(loop)
				require.NoError(t, err)
				require.True(t, b.clk.WaitForTimers(timers+2, 10*time.Second), "waiting for capacity")
				// SIGTERM: the claim loop's context ends, the waiting run is handed back.
				stop()
				b.e.startWorkers(loop)()
				r := b.waitStatus(t, sid, slot, store.RunPending)
				require.Empty(t, r.ClaimedBy)
				require.Zero(t, r.Attempt, "never sent")
				// Replica 2 takes it over once capacity frees, and it runs once.
				require.NoError(t, b.gw.Release(b.ctx, held))
				_, other := b.engine(b.reopen(), "replica-2")
				b.workers(t, other)
				require.NoError(t, other.leasePass(b.ctx))
				done := b.waitStatus(t, sid, slot, store.RunSucceeded)
				require.Equal(t, "replica-2", done.ClaimedBy)
				require.Len(t, a.received(), 1)
			})

			t.Run("TwoReplicasNeverRunASlotTwice", func(t *testing.T) {
				t.Parallel()
				a := newAgent(t)
				b := setup(t, backend, a.srv.URL)
				_, other := b.engine(b.reopen(), "replica-2")
				b.workers(t, b.e)
				b.workers(t, other)
				require.NoError(t, b.st.InTx(b.ctx, func(tx store.Tx) error {
					w, err := tx.GetWorkspace(b.ctx, b.ws)
					require.NoError(t, err)
					w.MaxConcurrentTasks = 100
					_, err = tx.UpdateWorkspace(b.ctx, w)
					return err
				}))
				var sids []string
				for i := range 30 {
					sids = append(sids, b.create(t, fmt.Sprintf(`{"name":"s%d","cron_expr":"* * * * * *","prompt":"p"}`, i)))
				}
				for step := 1; step <= 5; step++ {
					slot := t0.Add(time.Duration(step) * time.Second)
					b.clk.Set(slot)
					var wg sync.WaitGroup
					for _, e := range []*Engine{b.e, other, b.e, other} {
						wg.Add(1)
						go func() {
							defer wg.Done()
							if _, err := e.claimOnce(b.ctx); err != nil {
								t.Error(err)
							}
						}()
					}
					wg.Wait()
					for _, sid := range sids { // each slot's run ends before the next slot (no overlap)
						b.waitStatus(t, sid, slot, store.RunSucceeded)
					}
				}
				for _, sid := range sids {
					require.Len(t, b.history(t, sid), 5, "one row per slot")
				}
				require.Len(t, a.received(), 150, "each slot delivered once")
			})
		})
	}
}

// next receives from ch, failing the test after 10 s instead of hanging.
func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived")
		return ""
	}
}

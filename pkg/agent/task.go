package agent

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// subscriberBuffer is how many events a streaming caller may fall behind
// before its stream is closed with an error (it can still poll tasks/get):
// a slow reader never blocks the task that produces the events.
const subscriberBuffer = 1024

// eventKind says what an event carries.
type eventKind int

const (
	evTask     eventKind = iota // the task as a whole (first event of a stream)
	evStatus                    // a status update
	evArtifact                  // a chunk of the reply artifact
)

// event is one update of a task, encoded per caller version when sent.
type event struct {
	kind   eventKind
	snap   taskSnap // evTask
	st     status   // evStatus
	final  bool     // evStatus: the task reached a terminal state
	chunk  string   // evArtifact
	append bool     // evArtifact: chunk continues the previous one
}

// subscriber is one streaming caller of a task.
type subscriber struct {
	ch       chan event
	overflow bool // set (before ch is closed) when the caller fell behind
}

// task is one unit of work and its state. Its fields are guarded by mu;
// id, contextID, replyID, request and the timestamps never change after
// creation.
type task struct {
	id, contextID string
	replyID       string
	method        string
	request       *Request
	userMsg       *message
	created       time.Time

	mu       sync.Mutex
	st       status
	reply    strings.Builder
	chunks   int
	agentMsg *message
	subs     []*subscriber
	cancel   context.CancelFunc
	done     chan struct{} // closed when the task reaches a terminal state
	now      func() time.Time
}

// taskSnap is a copy of a task's state for encoding outside the lock.
type taskSnap struct {
	id, contextID, replyID string
	st                     status
	history                []*message
	reply                  string
	hasReply               bool
}

func newTask(msg *message, req *Request, method string, now func() time.Time) *task {
	t := &task{
		id:      uuid.Must(uuid.NewV7()).String(),
		replyID: uuid.Must(uuid.NewV7()).String(),
		method:  method, request: req, userMsg: msg, created: now(),
		done: make(chan struct{}), now: now,
	}
	t.contextID = msg.contextID
	if t.contextID == "" {
		t.contextID = uuid.Must(uuid.NewV7()).String()
	}
	msg.taskID, msg.contextID = t.id, t.contextID
	req.TaskID, req.ContextID = t.id, t.contextID
	t.st = status{state: stateSubmitted, at: t.created}
	return t
}

// snapshot copies the state; historyLength (when not nil) keeps only the
// most recent messages of the history.
func (t *task) snapshot(historyLength *int) taskSnap {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshotLocked(historyLength)
}

func (t *task) snapshotLocked(historyLength *int) taskSnap {
	s := taskSnap{id: t.id, contextID: t.contextID, replyID: t.replyID, st: t.st, reply: t.reply.String(), hasReply: t.chunks > 0}
	s.history = []*message{t.userMsg}
	if t.agentMsg != nil {
		s.history = append(s.history, t.agentMsg)
	}
	if historyLength != nil && *historyLength >= 0 && *historyLength < len(s.history) {
		s.history = s.history[len(s.history)-*historyLength:]
	}
	return s
}

// subscribe registers a streaming caller and returns the task as it is now;
// the caller receives every later event, in order.
func (t *task) subscribe() (*subscriber, taskSnap) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &subscriber{ch: make(chan event, subscriberBuffer)}
	if t.st.state.terminal() {
		close(s.ch)
	} else {
		t.subs = append(t.subs, s)
	}
	return s, t.snapshotLocked(nil)
}

// unsubscribe forgets a caller that went away.
func (t *task) unsubscribe(s *subscriber) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, x := range t.subs {
		if x == s {
			t.subs = append(t.subs[:i], t.subs[i+1:]...)
			close(s.ch)
			return
		}
	}
}

// publishLocked sends ev to every subscriber without blocking; one that
// fell behind is closed with the overflow mark.
func (t *task) publishLocked(ev event) {
	kept := t.subs[:0]
	for _, s := range t.subs {
		select {
		case s.ch <- ev:
			kept = append(kept, s)
		default:
			s.overflow = true
			close(s.ch)
		}
	}
	for i := len(kept); i < len(t.subs); i++ {
		t.subs[i] = nil
	}
	t.subs = kept
}

func (t *task) agentMessage(text string) *message {
	return &message{id: uuid.Must(uuid.NewV7()).String(), role: "agent", parts: []Part{textPart(text)}, contextID: t.contextID, taskID: t.id}
}

// setWorking moves a submitted task to working.
func (t *task) setWorking() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.state != stateSubmitted {
		return
	}
	t.st = status{state: stateWorking, at: t.now()}
	t.publishLocked(event{kind: evStatus, st: t.st})
}

// progress records a working status with a message.
func (t *task) progress(text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.state.terminal() {
		return
	}
	t.st = status{state: stateWorking, msg: t.agentMessage(text), at: t.now()}
	t.publishLocked(event{kind: evStatus, st: t.st})
}

// appendReply adds a chunk of reply text.
func (t *task) appendReply(text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.state.terminal() {
		return
	}
	t.reply.WriteString(text)
	t.chunks++
	t.publishLocked(event{kind: evArtifact, chunk: text, append: t.chunks > 1})
}

// finish moves the task to a terminal state with a final agent message,
// ends every stream and releases waiters. It reports false when the task
// had already ended (for example it was cancelled first).
func (t *task) finish(s state, text string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.state.terminal() {
		return false
	}
	t.agentMsg = t.agentMessage(text)
	t.st = status{state: s, msg: t.agentMsg, at: t.now()}
	t.publishLocked(event{kind: evStatus, st: t.st, final: true})
	for _, sub := range t.subs {
		close(sub.ch)
	}
	t.subs = nil
	close(t.done)
	return true
}

// size approximates the memory a finished task holds: its request and
// its reply (the final message shares the reply's bytes).
func (t *task) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.reply.Len() + 1024
	for _, p := range t.request.Parts {
		n += len(p.Text)
		if p.File != nil {
			n += len(p.File.Bytes) + len(p.File.URL)
		}
		if p.Data != nil {
			n += 1024 // a rough guess; data parts are small in practice
		}
	}
	if t.agentMsg != nil && t.st.state != stateCompleted {
		n += len(joinText(t.agentMsg.parts))
	}
	return n
}

// state returns the current state.
func (t *task) state() state {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st.state
}

// replyText returns the reply written so far.
func (t *task) replyText() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reply.String()
}

// finalText returns the text of the final status message, if any.
func (t *task) finalText() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.agentMsg == nil {
		return ""
	}
	return joinText(t.agentMsg.parts)
}

// encodeTask encodes a snapshot for version v.
func encodeTask(s taskSnap, v version) wireTask {
	w := wireTask{ID: s.id, ContextID: s.contextID, Status: encodeStatus(s.st, v)}
	if v == v03 {
		w.Kind = "task"
	}
	if s.hasReply {
		w.Artifacts = []wireArtifact{encodeArtifact(artifact{id: s.replyID, name: "reply", parts: []Part{textPart(s.reply)}}, v)}
	}
	for _, m := range s.history {
		w.History = append(w.History, *encodeMessage(m, v))
	}
	return w
}

// encodeEvent encodes a stream event of task t for version v: 0.3 events
// carry a "kind"; 1.0 events are wrapped in {"task"|"statusUpdate"|"artifactUpdate": …}.
func encodeEvent(t *task, ev event, v version) any {
	switch ev.kind {
	case evTask:
		w := encodeTask(ev.snap, v)
		if v == v10 {
			return map[string]any{"task": w}
		}
		return w
	case evStatus:
		w := wireStatusUpdate{TaskID: t.id, ContextID: t.contextID, Status: encodeStatus(ev.st, v)}
		if v == v10 {
			return map[string]any{"statusUpdate": w}
		}
		final := ev.final
		w.Kind, w.Final = "status-update", &final
		return w
	default:
		w := wireArtifactUpdate{
			TaskID: t.id, ContextID: t.contextID, Append: ev.append,
			Artifact: encodeArtifact(artifact{id: t.replyID, name: "reply", parts: []Part{textPart(ev.chunk)}}, v),
		}
		if v == v10 {
			return map[string]any{"artifactUpdate": w}
		}
		w.Kind = "artifact-update"
		return w
	}
}

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Part is one piece of a message or an artifact: text (the default), a
// structured data value (Data non-nil) or a file (File non-nil).
type Part struct {
	// Text is the content of a text part.
	Text string
	// Data is the value of a data part; any JSON-encodable value.
	Data any
	// File is the content of a file part.
	File *File
	// Metadata is optional extension metadata of the part.
	Metadata map[string]any
}

// File is the content of a file part: a reference (URL) or inline bytes.
type File struct {
	// URL locates the file; empty when Bytes carries it.
	URL string
	// Bytes is the file's content when it travels inline.
	Bytes []byte
	// MediaType is the file's media type, e.g. "image/png".
	MediaType string
	// Name is the file's name, e.g. "report.pdf".
	Name string
}

// textPart returns a text part.
func textPart(text string) Part { return Part{Text: text} }

// isText reports whether p is a text part.
func (p Part) isText() bool { return p.Data == nil && p.File == nil }

// version is the A2A protocol version of one request.
type version int

const (
	v03 version = iota // A2A 0.3: message/send …, "kind" discriminators, lower-case states
	v10                // A2A 1.0: SendMessage …, wrapped results, TASK_STATE_* states
)

func (v version) String() string {
	if v == v10 {
		return "1.0"
	}
	return "0.3"
}

// state is a task state, spelled as in A2A 0.3.
type state string

const (
	stateSubmitted     state = "submitted"
	stateWorking       state = "working"
	stateInputRequired state = "input-required"
	stateCompleted     state = "completed"
	stateFailed        state = "failed"
	stateCanceled      state = "canceled"
	stateRejected      state = "rejected"
)

// terminal reports whether no further change may happen to a task in s.
func (s state) terminal() bool {
	switch s {
	case stateCompleted, stateFailed, stateCanceled, stateRejected:
		return true
	}
	return false
}

// wire spells s for protocol version v: "input-required" in 0.3,
// "TASK_STATE_INPUT_REQUIRED" in 1.0.
func (s state) wire(v version) string {
	if v == v10 {
		return "TASK_STATE_" + strings.ToUpper(strings.ReplaceAll(string(s), "-", "_"))
	}
	return string(s)
}

// message is a protocol message in either version.
type message struct {
	id        string
	role      string // "user" or "agent"
	parts     []Part
	contextID string
	taskID    string
	metadata  map[string]any
}

// artifact is an output of a task.
type artifact struct {
	id    string
	name  string
	parts []Part
}

// status is a task status.
type status struct {
	state state
	msg   *message
	at    time.Time
}

// ---- encoding: one set of wire structs, filled per version ----

type wireFile struct {
	URI      string `json:"uri,omitempty"`
	Bytes    []byte `json:"bytes,omitempty"`
	MimeType string `json:"mimeType,omitempty"`
	Name     string `json:"name,omitempty"`
}

type wirePart struct {
	Kind      string         `json:"kind,omitempty"` // 0.3
	Text      *string        `json:"text,omitempty"`
	Data      any            `json:"data,omitempty"`
	File      *wireFile      `json:"file,omitempty"`      // 0.3
	URL       string         `json:"url,omitempty"`       // 1.0
	Raw       []byte         `json:"raw,omitempty"`       // 1.0
	MediaType string         `json:"mediaType,omitempty"` // 1.0
	Filename  string         `json:"filename,omitempty"`  // 1.0
	Metadata  map[string]any `json:"metadata,omitempty"`
}

type wireMessage struct {
	Kind      string         `json:"kind,omitempty"` // "message" in 0.3
	MessageID string         `json:"messageId"`
	Role      string         `json:"role"`
	Parts     []wirePart     `json:"parts"`
	ContextID string         `json:"contextId,omitempty"`
	TaskID    string         `json:"taskId,omitempty"`
	Metadata  map[string]any `json:"metadata,omitempty"`
}

type wireStatus struct {
	State     string       `json:"state"`
	Message   *wireMessage `json:"message,omitempty"`
	Timestamp string       `json:"timestamp,omitempty"`
}

type wireArtifact struct {
	ArtifactID string     `json:"artifactId"`
	Name       string     `json:"name,omitempty"`
	Parts      []wirePart `json:"parts"`
}

type wireTask struct {
	Kind      string         `json:"kind,omitempty"` // "task" in 0.3
	ID        string         `json:"id"`
	ContextID string         `json:"contextId"`
	Status    wireStatus     `json:"status"`
	Artifacts []wireArtifact `json:"artifacts,omitempty"`
	History   []wireMessage  `json:"history,omitempty"`
}

type wireStatusUpdate struct {
	Kind      string     `json:"kind,omitempty"` // "status-update" in 0.3
	TaskID    string     `json:"taskId"`
	ContextID string     `json:"contextId"`
	Status    wireStatus `json:"status"`
	Final     *bool      `json:"final,omitempty"` // 0.3 only (always present there)
}

type wireArtifactUpdate struct {
	Kind      string       `json:"kind,omitempty"` // "artifact-update" in 0.3
	TaskID    string       `json:"taskId"`
	ContextID string       `json:"contextId"`
	Artifact  wireArtifact `json:"artifact"`
	Append    bool         `json:"append,omitempty"`
	LastChunk bool         `json:"lastChunk,omitempty"`
}

func encodeParts(parts []Part, v version) []wirePart {
	out := make([]wirePart, 0, len(parts))
	for _, p := range parts {
		w := wirePart{Metadata: p.Metadata}
		switch {
		case p.File != nil:
			if v == v03 {
				w.Kind = "file"
				w.File = &wireFile{URI: p.File.URL, Bytes: p.File.Bytes, MimeType: p.File.MediaType, Name: p.File.Name}
			} else {
				w.URL, w.Raw, w.MediaType, w.Filename = p.File.URL, p.File.Bytes, p.File.MediaType, p.File.Name
			}
		case p.Data != nil:
			w.Data = p.Data
			if v == v03 {
				w.Kind = "data"
			}
		default:
			text := p.Text
			w.Text = &text
			if v == v03 {
				w.Kind = "text"
			}
		}
		out = append(out, w)
	}
	return out
}

func encodeRole(role string, v version) string {
	if v == v10 {
		return "ROLE_" + strings.ToUpper(role)
	}
	return role
}

func encodeMessage(m *message, v version) *wireMessage {
	if m == nil {
		return nil
	}
	w := &wireMessage{
		MessageID: m.id, Role: encodeRole(m.role, v), Parts: encodeParts(m.parts, v),
		ContextID: m.contextID, TaskID: m.taskID, Metadata: m.metadata,
	}
	if v == v03 {
		w.Kind = "message"
	}
	return w
}

func encodeStatus(s status, v version) wireStatus {
	w := wireStatus{State: s.state.wire(v), Message: encodeMessage(s.msg, v)}
	if !s.at.IsZero() {
		w.Timestamp = s.at.UTC().Format(time.RFC3339Nano)
	}
	return w
}

func encodeArtifact(a artifact, v version) wireArtifact {
	return wireArtifact{ArtifactID: a.id, Name: a.name, Parts: encodeParts(a.parts, v)}
}

// ---- decoding: lenient, accepting either version's spelling ----

// inPart accepts a part in the 0.3 ("kind") or the 1.0 (flattened) shape.
type inPart struct {
	Kind      string          `json:"kind"`
	Text      *string         `json:"text"`
	Data      json.RawMessage `json:"data"`
	File      *wireFile       `json:"file"`
	URL       string          `json:"url"`
	Raw       []byte          `json:"raw"`
	MediaType string          `json:"mediaType"`
	Filename  string          `json:"filename"`
	Metadata  map[string]any  `json:"metadata"`
}

type inMessage struct {
	MessageID string         `json:"messageId"`
	Role      string         `json:"role"`
	Parts     []inPart       `json:"parts"`
	ContextID string         `json:"contextId"`
	TaskID    string         `json:"taskId"`
	Metadata  map[string]any `json:"metadata"`
}

var errNoContent = errors.New("has no text, data, file, url or raw content")

func decodePart(p inPart) (Part, error) {
	out := Part{Metadata: p.Metadata}
	switch {
	case p.Text != nil:
		out.Text = *p.Text
	case len(p.Data) > 0 && string(p.Data) != "null":
		var v any
		if err := json.Unmarshal(p.Data, &v); err != nil {
			return Part{}, err
		}
		out.Data = v
	case p.File != nil:
		out.File = &File{URL: p.File.URI, Bytes: p.File.Bytes, MediaType: p.File.MimeType, Name: p.File.Name}
	case p.URL != "" || p.Raw != nil:
		out.File = &File{URL: p.URL, Bytes: p.Raw, MediaType: p.MediaType, Name: p.Filename}
	default:
		return Part{}, errNoContent
	}
	return out, nil
}

func decodeRole(r string) string {
	switch strings.ToLower(strings.TrimPrefix(r, "ROLE_")) {
	case "agent":
		return "agent"
	}
	return "user"
}

func decodeMessage(m *inMessage) (*message, error) {
	if m == nil {
		return nil, errors.New("message is required")
	}
	if len(m.Parts) == 0 {
		return nil, errors.New("message.parts must not be empty")
	}
	out := &message{id: m.MessageID, role: decodeRole(m.Role), contextID: m.ContextID, taskID: m.TaskID, metadata: m.Metadata}
	for i, p := range m.Parts {
		part, err := decodePart(p)
		if err != nil {
			return nil, fmt.Errorf("message.parts[%d] %v", i, err)
		}
		out.parts = append(out.parts, part)
	}
	return out, nil
}

// joinText returns the text parts of parts, one per line.
func joinText(parts []Part) string {
	var b strings.Builder
	for _, p := range parts {
		if !p.isText() {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Text)
	}
	return b.String()
}

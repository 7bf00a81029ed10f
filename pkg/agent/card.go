package agent

import (
	"encoding/json"
	"net/http"
)

// The card is served in the A2A 1.0 shape (supportedInterfaces, one per
// protocol version at the same URL) with the 0.3 fields (url,
// protocolVersion, preferredTransport) kept, so that clients of either
// version find the agent. The platform's scheduler reads supportedInterfaces
// as "speaks 1.0".

type cardInterface struct {
	URL             string `json:"url"`
	ProtocolBinding string `json:"protocolBinding"`
	ProtocolVersion string `json:"protocolVersion"`
}

type cardCapabilities struct {
	Streaming         bool `json:"streaming"`
	PushNotifications bool `json:"pushNotifications"`
}

type cardSkill struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	Examples    []string `json:"examples,omitempty"`
}

type card struct {
	Name                string           `json:"name"`
	Description         string           `json:"description"`
	Version             string           `json:"version"`
	SupportedInterfaces []cardInterface  `json:"supportedInterfaces"`
	Capabilities        cardCapabilities `json:"capabilities"`
	DefaultInputModes   []string         `json:"defaultInputModes"`
	DefaultOutputModes  []string         `json:"defaultOutputModes"`
	Skills              []cardSkill      `json:"skills"`
	// A2A 0.3 fields, for older clients.
	URL                string `json:"url"`
	ProtocolVersion    string `json:"protocolVersion"`
	PreferredTransport string `json:"preferredTransport"`
}

// cardFor builds the card published at url.
func (a *Agent) cardFor(url string) card {
	c := card{
		Name: a.o.Name, Description: a.o.Description, Version: a.o.Version,
		SupportedInterfaces: []cardInterface{
			{URL: url, ProtocolBinding: "JSONRPC", ProtocolVersion: "1.0"},
			{URL: url, ProtocolBinding: "JSONRPC", ProtocolVersion: "0.3"},
		},
		Capabilities:      cardCapabilities{Streaming: true},
		DefaultInputModes: []string{"text/plain"}, DefaultOutputModes: []string{"text/plain"},
		Skills: []cardSkill{},
		URL:    url, ProtocolVersion: "0.3.0", PreferredTransport: "JSONRPC",
	}
	for _, s := range a.o.Skills {
		tags := s.Tags
		if tags == nil {
			tags = []string{}
		}
		c.Skills = append(c.Skills, cardSkill{ID: s.ID, Name: s.Name, Description: s.Description, Tags: tags, Examples: s.Examples})
	}
	return c
}

// CardJSON returns the agent card as published at url.
func (a *Agent) CardJSON(url string) []byte {
	b, _ := json.MarshalIndent(a.cardFor(url), "", "  ")
	return b
}

func (a *Agent) serveCard(w http.ResponseWriter, r *http.Request) {
	u := a.URL()
	if u == "" { // served by another server: describe the address the caller used
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		u = scheme + "://" + r.Host
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(append(a.CardJSON(u), '\n'))
}

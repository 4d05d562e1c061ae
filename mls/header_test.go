package mls

import (
	"bytes"
	"testing"
)

// wireHeaderMatches checks that h agrees with the fully decoded m.
func wireHeaderMatches(h *Header, m *MLSMessage) bool {
	want := Header{Version: m.Version, WireFormat: m.WireFormat}
	switch {
	case m.PrivateMessage != nil:
		p := m.PrivateMessage
		want.GroupID, want.Epoch, want.ContentType, want.AuthenticatedData = p.GroupID, p.Epoch, p.ContentType, p.AuthenticatedData
	case m.PublicMessage != nil:
		c := &m.PublicMessage.Content
		want.GroupID, want.Epoch, want.ContentType, want.AuthenticatedData = c.GroupID, c.Epoch, c.ContentType, c.AuthenticatedData
		want.SenderType = c.Sender.SenderType
	}
	return h.Version == want.Version && h.WireFormat == want.WireFormat &&
		bytes.Equal(h.GroupID, want.GroupID) && h.Epoch == want.Epoch &&
		h.ContentType == want.ContentType && bytes.Equal(h.AuthenticatedData, want.AuthenticatedData) &&
		h.SenderType == want.SenderType
}

func TestParseHeader(t *testing.T) {
	var msgs [][]byte
	for _, c := range wireTestMessages(t) {
		msgs = append(msgs, c.data)
	}
	for _, it := range wireVectorItems(t) {
		if _, ok := it.value.(*MLSMessage); ok {
			msgs = append(msgs, it.data)
		}
	}
	seen := map[WireFormat]int{}
	for i, b := range msgs {
		var m MLSMessage
		if err := m.UnmarshalMLS(b); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		h, err := ParseHeader(b)
		if err != nil {
			t.Fatalf("message %d (%v): %v", i, m.WireFormat, err)
		}
		if !wireHeaderMatches(h, &m) {
			t.Errorf("message %d (%v): header %+v disagrees with the decoded message", i, m.WireFormat, h)
		}
		seen[m.WireFormat]++
	}
	for wf := WireFormatPublicMessage; wf <= WireFormatKeyPackage; wf++ {
		if seen[wf] == 0 {
			t.Errorf("no %v message tested", wf)
		}
	}

	// The header of a private message aliases the input.
	b := wireMustMarshal(t, wireTestPrivate(ContentTypeCommit, 10))
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.ContentType != ContentTypeCommit || h.Epoch != 7 || string(h.GroupID) != "group" || string(h.AuthenticatedData) != "ad" || h.SenderType != 0 {
		t.Errorf("private header %+v", h)
	}
	if &h.GroupID[0] != &b[5] {
		t.Error("GroupID does not alias the input")
	}
}

func TestParseHeaderPrivateMessageAllocations(t *testing.T) {
	b := wireMustMarshal(t, wireTestPrivate(ContentTypeApplication, 1000))
	var h Header
	allocs := testing.AllocsPerRun(100, func() {
		if err := h.Parse(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Header.Parse of a PrivateMessage allocates %v times, want 0", allocs)
	}
}

// BenchmarkParseHeaderPrivateMessage1KiB parses the header of a 1 KiB
// PrivateMessage.
func BenchmarkParseHeaderPrivateMessage1KiB(b *testing.B) {
	m := wireTestPrivate(ContentTypeApplication, 0)
	base := wireMustMarshal(b, m)
	// The ciphertext length prefix grows from 1 to 2 bytes past 63 bytes.
	m.PrivateMessage.Ciphertext = bytes.Repeat([]byte{0xc1}, 1024-len(base)-1)
	msg := wireMustMarshal(b, m)
	if len(msg) != 1024 {
		b.Fatalf("message is %d bytes, want 1024", len(msg))
	}
	var h Header
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := h.Parse(msg); err != nil {
			b.Fatal(err)
		}
	}
}

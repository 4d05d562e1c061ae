package mls

import (
	"bytes"
	"testing"

	"github.com/mlsmode/mlsmode/mls/internal/testvectors"
)

// wireFuzzSeeds returns the serialised structures of the vector files and the
// fixtures, with their types.
func wireFuzzSeeds(f *testing.F) []wireVectorItem {
	items := wireVectorItems(f)
	var vectors []messagesVector
	testvectors.Load(f, "messages", &vectors)
	for i := range vectors {
		for _, fl := range vectors[i].fields() {
			items = append(items, wireVectorItem{fl.name, fl.data, fl.value()})
		}
	}
	for _, c := range append(wireTestMessages(f), wireTestStructures(f)...) {
		items = append(items, wireVectorItem{c.name, c.data, c.value()})
	}
	return items
}

// wireFuzzMessage checks the invariants of MLSMessage decoding on b: a
// decoded message re-encodes to b, and ParseHeader fails exactly when the
// decoder does and otherwise agrees with it.
func wireFuzzMessage(t *testing.T, b []byte) {
	var m MLSMessage
	err := m.UnmarshalMLS(b)
	h, herr := ParseHeader(b)
	if (err == nil) != (herr == nil) {
		t.Fatalf("UnmarshalMLS error %v, ParseHeader error %v", err, herr)
	}
	if err != nil {
		if err.Error() != herr.Error() {
			t.Fatalf("UnmarshalMLS error %v, ParseHeader error %v", err, herr)
		}
		return
	}
	out, err := m.MarshalMLS()
	if err != nil {
		t.Fatalf("re-encoding a decoded message: %v", err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("re-encoding differs:\n in  %x\n out %x", b, out)
	}
	if !wireHeaderMatches(h, &m) {
		t.Fatalf("header %+v disagrees with the decoded message", h)
	}
}

func FuzzMLSMessage(f *testing.F) {
	for _, it := range wireFuzzSeeds(f) {
		if _, ok := it.value.(*MLSMessage); ok {
			f.Add(it.data)
		}
	}
	f.Fuzz(wireFuzzMessage)
}

func FuzzParseHeader(f *testing.F) {
	for _, it := range wireFuzzSeeds(f) {
		if _, ok := it.value.(*MLSMessage); ok && len(it.data) > 4 && it.data[3] <= byte(WireFormatPrivateMessage) {
			f.Add(it.data)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		err := h.Parse(b)
		if err != nil && (h.GroupID != nil || h.WireFormat != 0) {
			t.Fatalf("failed Parse left %+v", h)
		}
		wireFuzzMessage(t, b)
	})
}

func FuzzKeyPackage(f *testing.F) {
	for _, it := range wireFuzzSeeds(f) {
		switch it.value.(type) {
		case *MLSMessage:
			if len(it.data) > 4 && it.data[3] == byte(WireFormatKeyPackage) {
				f.Add(it.data[4:])
			}
		case *Add:
			f.Add(it.data)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var kp KeyPackage
		if err := kp.UnmarshalMLS(b); err != nil {
			return
		}
		out, err := kp.MarshalMLS()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs (%v):\n in  %x\n out %x", err, b, out)
		}
		tbs, err := kp.TBS()
		if err != nil || !bytes.HasPrefix(b, tbs) {
			t.Fatalf("TBS is not a prefix of the encoding (%v)", err)
		}
		if _, err := kp.LeafNode.TBS([]byte("g"), 1); err != nil {
			t.Fatalf("LeafNode.TBS: %v", err)
		}
	})
}

// wireFuzzTypes are the structures FuzzStructures decodes, chosen by the
// first input byte.
var wireFuzzTypes = []func() wireValue{
	func() wireValue { return new(RatchetTree) },
	func() wireValue { return new(GroupSecrets) },
	func() wireValue { return new(Commit) },
	func() wireValue { return new(Proposal) },
	func() wireValue { return new(UpdatePath) },
	func() wireValue { return new(GroupContext) },
	func() wireValue { return new(AuthenticatedContent) },
	func() wireValue { return new(Extensions) },
	func() wireValue { return new(ExternalSenders) },
	func() wireValue { return new(RequiredCapabilities) },
	func() wireValue { return new(LeafNode) },
	func() wireValue { return new(ReInit) },
}

// FuzzStructures round-trips the structures other than MLSMessage and
// KeyPackage.
func FuzzStructures(f *testing.F) {
	for _, it := range wireFuzzSeeds(f) {
		for i, newValue := range wireFuzzTypes {
			v := newValue()
			if v.UnmarshalMLS(it.data) == nil {
				f.Add(append([]byte{byte(i)}, it.data...))
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		v := wireFuzzTypes[int(b[0])%len(wireFuzzTypes)]()
		if v.UnmarshalMLS(b[1:]) != nil {
			return
		}
		out, err := v.MarshalMLS()
		if err != nil || !bytes.Equal(out, b[1:]) {
			t.Fatalf("%T: re-encoding differs (%v):\n in  %x\n out %x", v, err, b[1:], out)
		}
	})
}

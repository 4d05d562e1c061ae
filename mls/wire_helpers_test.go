package mls

import (
	"bytes"
	"errors"
	"fmt"
)

// wireValue is a structure with the exported encoding pair.
type wireValue interface {
	MarshalMLS() ([]byte, error)
	UnmarshalMLS([]byte) error
}

// wireRoundTrip decodes b into v, checks that v re-encodes to b, and does the
// same for the bodies of the known extensions found inside v. It returns the
// number of structures round-tripped.
func wireRoundTrip(b []byte, v wireValue) (int, error) {
	if err := wireRoundTripOne(b, v); err != nil {
		return 0, err
	}
	n := 1
	var lists []Extensions
	wireCollectExtensions(v, &lists)
	for len(lists) > 0 {
		l := lists[0]
		lists = lists[1:]
		for _, e := range l {
			body := wireExtensionBody(e.Type)
			if body == nil {
				continue
			}
			if err := wireRoundTripOne(e.Data, body); err != nil {
				return n, fmt.Errorf("%v extension: %w", e.Type, err)
			}
			n++
			wireCollectExtensions(body, &lists)
		}
	}
	return n, nil
}

// wireRoundTripOne decodes b into v and checks that v re-encodes to b.
func wireRoundTripOne(b []byte, v wireValue) error {
	if err := v.UnmarshalMLS(b); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	out, err := v.MarshalMLS()
	if err != nil {
		return fmt.Errorf("re-encode: %w", err)
	}
	if !bytes.Equal(out, b) {
		return errors.New("re-encoding differs from the input:\n in  " + fmt.Sprintf("%x", b) + "\n out " + fmt.Sprintf("%x", out))
	}
	return nil
}

// wireExtensionBody returns a value of the body type of extension type t, or
// nil for types without one.
func wireExtensionBody(t ExtensionType) wireValue {
	switch t {
	case ExtensionTypeApplicationID:
		return new(ApplicationID)
	case ExtensionTypeRatchetTree:
		return new(RatchetTree)
	case ExtensionTypeRequiredCapabilities:
		return new(RequiredCapabilities)
	case ExtensionTypeExternalPub:
		return new(ExternalPub)
	case ExtensionTypeExternalSenders:
		return new(ExternalSenders)
	case ExtensionTypeLastResort:
		return new(LastResort)
	}
	return nil
}

// wireCollectExtensions appends the extension lists found in v to out.
func wireCollectExtensions(v any, out *[]Extensions) {
	switch x := v.(type) {
	case *MLSMessage:
		switch {
		case x.PublicMessage != nil:
			wireCollectExtensions(&x.PublicMessage.Content, out)
		case x.GroupInfo != nil:
			wireCollectExtensions(x.GroupInfo, out)
		case x.KeyPackage != nil:
			wireCollectExtensions(x.KeyPackage, out)
		}
	case *PublicMessage:
		wireCollectExtensions(&x.Content, out)
	case *AuthenticatedContent:
		wireCollectExtensions(&x.Content, out)
	case *FramedContent:
		if x.Proposal != nil {
			wireCollectExtensions(x.Proposal, out)
		}
		if x.Commit != nil {
			wireCollectExtensions(x.Commit, out)
		}
	case *Commit:
		for _, p := range x.Proposals {
			if p.Proposal != nil {
				wireCollectExtensions(p.Proposal, out)
			}
		}
		if x.Path != nil {
			wireCollectExtensions(&x.Path.LeafNode, out)
		}
	case *UpdatePath:
		wireCollectExtensions(&x.LeafNode, out)
	case *Proposal:
		switch {
		case x.Add != nil:
			wireCollectExtensions(x.Add, out)
		case x.Update != nil:
			wireCollectExtensions(x.Update, out)
		case x.ReInit != nil:
			wireCollectExtensions(x.ReInit, out)
		case x.GroupContextExtensions != nil:
			wireCollectExtensions(x.GroupContextExtensions, out)
		}
	case *Add:
		wireCollectExtensions(&x.KeyPackage, out)
	case *Update:
		wireCollectExtensions(&x.LeafNode, out)
	case *ReInit:
		*out = append(*out, x.Extensions)
	case *GroupContextExtensions:
		*out = append(*out, x.Extensions)
	case *KeyPackage:
		*out = append(*out, x.Extensions)
		wireCollectExtensions(&x.LeafNode, out)
	case *LeafNode:
		*out = append(*out, x.Extensions)
	case *GroupContext:
		*out = append(*out, x.Extensions)
	case *GroupInfo:
		*out = append(*out, x.GroupContext.Extensions, x.Extensions)
	case *RatchetTree:
		for _, n := range *x {
			if n != nil && n.Leaf != nil {
				wireCollectExtensions(n.Leaf, out)
			}
		}
	}
}

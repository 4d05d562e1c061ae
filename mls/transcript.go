package mls

import "crypto/hmac"

// ConfirmedTranscriptHash returns confirmed_transcript_hash_[n] from
// interim_transcript_hash_[n-1] and the AuthenticatedContent of the Commit
// that starts epoch n (RFC 9420 §8.2).
func ConfirmedTranscriptHash(cs CipherSuite, interimBefore []byte, commit *AuthenticatedContent) ([]byte, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	in, err := ConfirmedTranscriptHashInput(commit.WireFormat, &commit.Content, commit.Auth.Signature)
	if err != nil {
		return nil, err
	}
	h := s.NewHash()
	h.Write(interimBefore)
	h.Write(in)
	return h.Sum(nil), nil
}

// InterimTranscriptHash returns interim_transcript_hash_[n] from
// confirmed_transcript_hash_[n] and the Commit's confirmation tag.
func InterimTranscriptHash(cs CipherSuite, confirmed, confirmationTag []byte) ([]byte, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	in, err := InterimTranscriptHashInput(confirmationTag)
	if err != nil {
		return nil, err
	}
	h := s.NewHash()
	h.Write(confirmed)
	h.Write(in)
	return h.Sum(nil), nil
}

// ConfirmationTag is MAC(confirmation_key, confirmed_transcript_hash) (RFC
// 9420 §6.1).
func ConfirmationTag(cs CipherSuite, confirmationKey, confirmed []byte) ([]byte, error) {
	s, err := cs.impl()
	if err != nil {
		return nil, err
	}
	return s.MAC(confirmationKey, confirmed), nil
}

// VerifyConfirmationTag reports, in constant time, whether tag is the
// confirmation tag of confirmed under confirmationKey.
func VerifyConfirmationTag(cs CipherSuite, confirmationKey, confirmed, tag []byte) bool {
	want, err := ConfirmationTag(cs, confirmationKey, confirmed)
	return err == nil && hmac.Equal(want, tag)
}

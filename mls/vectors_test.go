package mls

import "testing"

// TestVectors runs the official MLS test vectors that concern this package;
// the internal packages run their own (crypto-basics, tree-math,
// key-schedule, psk_secret, secret-tree). Each subtest logs how many cases
// ran per cipher suite and how many could not run because their suite is not
// implemented.
func TestVectors(t *testing.T) {
	t.Run("messages", testVectorsMessages)
	t.Run("deserialization", testVectorsDeserialization)
	t.Run("transcript-hashes", testVectorsTranscriptHashes)
	t.Run("message-protection", testVectorsMessageProtection)
	t.Run("tree-validation", testVectorsTreeValidation)
	t.Run("tree-operations", testVectorsTreeOperations)
	t.Run("treekem", testVectorsTreeKEM)
	t.Run("welcome", testVectorsWelcome)
	t.Run("passive-client-welcome", testVectorsPassive("passive-client-welcome"))
	t.Run("passive-client-handling-commit", testVectorsPassive("passive-client-handling-commit"))
}

// supportedSuite says whether a vector case's suite can run here.
func supportedSuite(s uint16) bool { return CipherSuite(s).Supported() }

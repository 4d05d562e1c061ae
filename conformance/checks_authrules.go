package conformance

// AuthRuleChecks are the auth-rule cases sent over /send.
func AuthRuleChecks() []Check { return nil }

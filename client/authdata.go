package client

import (
	"github.com/mlsmode/mlsmode/mls"
	"github.com/mlsmode/mlsmode/roomversion/fedmap"
)

// CommitOptions returns the options of a commit whose authenticated data is
// the federation map m, deterministically encoded (SPEC-NOTES §3).
func CommitOptions(m *fedmap.Map, opts mls.CommitOptions) (mls.CommitOptions, error) {
	ad, err := m.Encode()
	if err != nil {
		return mls.CommitOptions{}, err
	}
	opts.AuthenticatedData = ad
	return opts, nil
}

// FederationMap decodes the federation map of a received commit's
// authenticated data.
func FederationMap(r *mls.Received) (*fedmap.Map, error) {
	return fedmap.Decode(r.AuthenticatedData)
}

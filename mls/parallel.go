package mls

import (
	"runtime"
	"sync"
)

// parallel runs f(0), ..., f(n-1) on up to GOMAXPROCS goroutines and
// returns the error of the lowest index that failed. Small batches run
// inline: the work items here (HPKE encryptions, signature checks) cost tens
// of microseconds, so goroutines only pay off when there are several.
func parallel(n int, f func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n/4)
	if workers <= 1 {
		for i := range n {
			if err := f(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				errs[i] = f(i)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

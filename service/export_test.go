package service

import "github.com/google/uuid"

// WaitingCommits is how many commits wait in ws's queue (not yet taken into a batch).
func (s *Service) WaitingCommits(ws uuid.UUID) int {
	s.hot.mu.Lock()
	defer s.hot.mu.Unlock()
	if q := s.hot.byWS[ws]; q != nil {
		return len(q.waiting)
	}
	return 0
}

// RunningCommits reports whether a goroutine runs ws's queue.
func (s *Service) RunningCommits(ws uuid.UUID) bool {
	s.hot.mu.Lock()
	defer s.hot.mu.Unlock()
	q := s.hot.byWS[ws]
	return q != nil && q.running
}

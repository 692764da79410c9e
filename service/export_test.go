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

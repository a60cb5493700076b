//go:build !linux

package service

import "time"

// Without event loops (evloop_other.go) no connection is given one.

func (c *respConn) evConn() *evConn  { return c.ev }
func (c *respConn) evServe()         {}
func (c *respConn) evTick(time.Time) {}

//go:build !linux

package service

import "time"

// Without event loops (evloop_other.go) no connection is given one.

func (c *respConn) evConn() *evConn  { return c.ev }
func (c *respConn) evServe()         {}
func (c *respConn) evTick(time.Time) {}

func (c *binaryConn) evConn() *evConn  { return c.ev }
func (c *binaryConn) evServe()         {}
func (c *binaryConn) evTick(time.Time) {}

type loopBudget struct{}

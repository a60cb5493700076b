//go:build !linux

package service

import "time"

// Without event loops (evloop_other.go) no connection is given one.

func (c *respConn) evServe()         {}
func (c *respConn) evTick(time.Time) {}
func (c *respConn) evClose()         {}

func (c *binaryConn) evServe()         {}
func (c *binaryConn) evTick(time.Time) {}
func (c *binaryConn) evClose()         {}

type loopBudget struct{}

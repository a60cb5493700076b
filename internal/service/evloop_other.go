//go:build !linux

package service

import (
	"errors"
	"io"
	"net"
	"time"
)

// Event loops are Linux only (epoll); elsewhere every connection has a
// goroutine.

type evHandler interface {
	evServe()
	evTick(now time.Time)
	evClose()
}

type evConn struct{}

func (ec *evConn) wake()         {}
func (ec *evConn) handedOff()    {}
func (ec *evConn) requestClose() {}
func (ec *evConn) release()      {}

func (ec *evConn) Read([]byte) (int, error) { return 0, io.EOF }

type evLoops struct{}

func newEvLoops(int) (*evLoops, error) { return nil, errors.ErrUnsupported }

func (ls *evLoops) shutdown() {}

func (ls *evLoops) take(net.Conn, evHandler, time.Duration) (*evConn, bool) { return nil, false }

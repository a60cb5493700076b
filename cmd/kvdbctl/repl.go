package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/chzyer/readline"
)

const (
	prompt      = "kvdb> "
	historyName = ".kvdb_history"
)

// runREPL starts the shell: interactive with line editing when stdin is a
// terminal, otherwise a silent line-by-line executor for scripts and pipes.
func (a *app) runREPL(ctx context.Context) error {
	if a.stdinIsTerminal() {
		return a.runInteractive(ctx)
	}
	return a.runScript(ctx, a.stdin, a.stdout)
}

// runScript executes the commands read from in, one per line, writing every
// answer (and every "(error) ...") to out. There is no prompt, so the output
// is just the answers. It keeps going after a failed command, like the
// interactive shell, but returns a *scriptError at the end if any command
// failed so a script's exit status reflects it.
func (a *app) runScript(ctx context.Context, in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	failed, total := 0, 0
	for {
		// ReadString rather than bufio.Scanner: Scanner caps line length and
		// a PUT of a large value is one long line.
		line, readErr := br.ReadString('\n')
		if strings.TrimSpace(line) != "" {
			total++
			quit, err := a.execLine(ctx, out, line)
			if err != nil {
				failed++
				if werr := writeText(out, "(error) %s\n", describeError(err)); werr != nil {
					return werr
				}
			}
			if quit {
				break
			}
		}
		if errors.Is(readErr, io.EOF) {
			break
		}
		if readErr != nil {
			return fmt.Errorf("reading commands: %w", readErr)
		}
	}
	if failed > 0 {
		return &scriptError{failed: failed, total: total}
	}
	return nil
}

// runInteractive is the terminal shell. Failed commands are shown and
// forgotten: a person at a prompt has seen them, so the exit status is 0.
func (a *app) runInteractive(ctx context.Context) error {
	cfg := &readline.Config{
		Prompt:          prompt,
		HistoryFile:     historyPath(),
		InterruptPrompt: "^C",
		EOFPrompt:       "exit",
		Stdout:          a.stdout,
		Stderr:          a.stderr,
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		return fmt.Errorf("starting the shell: %w", err)
	}
	defer rl.Close()

	out := rl.Stdout()
	fmt.Fprintf(out, "kvdbctl: server %s. Type HELP for commands, QUIT to exit.\n", a.address)
	for {
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			// Ctrl-C clears a half-typed line; on an empty line it leaves,
			// as in most shells.
			if line == "" {
				return nil
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading input: %w", err)
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		quit, err := a.execLine(ctx, out, line)
		if err != nil {
			fmt.Fprintf(out, "(error) %s\n", describeError(err))
		}
		if quit {
			return nil
		}
		rl.SetPrompt(a.prompt())
	}
}

// historyPath is ~/.kvdb_history, or "" (no history) when there is no home
// directory. readline itself ignores a history file it cannot open, which is
// the behaviour we want: history is a convenience, never a reason to fail.
func historyPath() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, historyName)
}

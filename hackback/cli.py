"""The `hackback` command: invoke's Program over the same task collection,
with hackback's own help (what each flag's value is) and none of invoke's own
core options that clash with the tasks' flags (-f, -w, -p, -R/--dry, -e, -d):
an option written before the task name is moved after it when it is one of
that task's flags (`hackback -w DIR checkpoints`), refused in one line otherwise."""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import Optional, Sequence

from invoke import Program

from . import __version__, tasks
from .tasks import ns

# invoke's core options hackback keeps: the rest run shell commands' options, or clash with task flags.
CORE = {"--help": True, "-h": True, "--version": False, "-V": False, "--list": False, "-l": False, "--complete": False,
        "--print-completion-script": True}  # flag -> takes a value (optional for --help)


class HackbackProgram(Program):  # type: ignore[misc]
    def print_columns(self, tuples: Sequence[tuple[str, Optional[str]]]) -> None:
        """Flags and their help in two columns, as invoke's; when the widest flag would
        leave its help under 30 columns, each help goes on the lines below its flag
        (invoke's own wrap fails on the negative width)."""
        width = shutil.get_terminal_size((80, 24)).columns
        name_width = max(len(name) for name, _ in tuples)
        pad = self.leading_indent + " " * (name_width + self.col_padding)
        stacked = width - len(pad) - 1 < 30
        help_width = max(width - 4 - self.leading_indent_width, 30) if stacked else width - len(pad) - 1
        for name, help_str in tuples:
            chunks = textwrap.wrap(help_str or "", width=help_width, break_on_hyphens=False)  # flags stay whole
            if stacked:
                print(self.leading_indent + name)
                print("".join(f"{self.leading_indent}    {c}\n" for c in chunks), end="")
            else:
                print((self.leading_indent + name).ljust(len(pad)) + (chunks[0] if chunks else "").rstrip())
                print("".join(f"{' ' * len(pad)}{c}\n" for c in chunks[1:]), end="")
        print("")

    def print_help(self) -> None:
        print(f"Usage: {self.binary} TASK [--options]   ({self.binary} TASK --help for a task's options)")
        print("")
        print("Options:")
        print("")
        self.print_columns([("-h, --help[=TASK]", "show this help, or a task's"), ("-V, --version", "show the version"),
                            ("-l, --list", "list the tasks")])
        self.list_tasks()

    def print_task_help(self, name: str) -> None:
        spec = next(t for t in tasks.TASKS if t.name == name)
        print(f"Usage: {self.binary} {name} [--options]")
        print("")
        for line in spec.doc.splitlines():
            print(self.leading_indent + line.strip() if line.strip() else "")
        print("")
        print("Options:")
        self.print_columns(tasks.help_rows(name))


program = HackbackProgram(namespace=ns, version=__version__, name="hackback", binary="hackback")


def reorder(argv: Sequence[str]) -> list[str]:
    """argv with options given before the task name moved after it, when they are
    that task's; any other ends the command with one line (exit 2)."""
    names = set(ns.task_names)
    at = next((i for i, a in enumerate(argv) if a in names), None)
    before, moved, i = [], [], 0
    while i < (len(argv) if at is None else at):
        arg = argv[i]
        flag = arg.split("=", 1)[0]
        if flag in CORE:
            before.append(arg)
            if CORE[flag] and "=" not in arg and flag != "--help" and i + 1 < len(argv):
                before.append(argv[i + 1])
                i += 1
        elif at is not None and (takes := _task_flag(argv[at], flag)) is not None:
            moved.append(arg)
            if takes and "=" not in arg and i + 1 < at:
                moved.append(argv[i + 1])
                i += 1
        else:
            task = argv[at] if at is not None else "TASK"
            print(f"hackback: error: {arg} is not an option of hackback itself (put it after the task: hackback {task} "
                  f"{arg} ...; `hackback {task} --help` lists the task's options)", file=sys.stderr)
            sys.exit(2)
        i += 1
    if at is None:
        return before
    task, rest = argv[at], list(argv[at + 1:])
    if "-h" in rest or "--help" in rest:
        return ["--help", task]  # whatever else is given, a task's --help is its help
    spec = next(t for t in tasks.TASKS if t.name == task)
    for option in spec.positional:  # hackback suite npb: the first word that is not an option
        if rest and not rest[0].startswith("-"):
            rest[0] = f"--{tasks._flag(option)}={rest[0]}"
    return [*before, task, *moved, *rest]


def _task_flag(task: str, flag: str) -> Optional[bool]:
    """Whether `flag` is one of the task's flags and takes a value (None: it is not one)."""
    spec = next(t for t in tasks.TASKS if t.name == task)
    for option in spec.options:
        name = tasks._flag(option)
        short = tasks.SHORT_FLAGS.get(name)
        if flag == f"--{name}" or (short and flag == f"-{short}"):
            return tasks.OPTIONS[option].kind is not bool
    return None


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = reorder(sys.argv[1:] if argv is None else argv)
    try:
        program.run(["hackback", *args])
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`hackback --help | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's own flush at exit is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()

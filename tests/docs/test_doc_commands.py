"""Docs that cannot drift: every command README.md and docs/*.md show runs as written, or says why it cannot.

- Every shell command in a code block is run here, exactly as written and in the order written, in a fresh
  copy of the repository after ``make demo ONCE=1`` (with the 4-item sample), on the default ports — unless
  its line (or its block's first comment) carries a visible marker: ``# needs AWS``, ``# needs a camera`` or
  ``# takes minutes``. ``make test`` is this suite itself.
- Every ``visual-search`` command in a code block, marked or not, parses with the real parser.
- Every ``--option`` a doc mentions, in code blocks or inline, exists in that command's ``--help``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from model.hub import COMMANDS, Parser, build_parser
from simulator.sample_data import SMALL, ensure_sample_data
from tests.conftest import ARTIFACTS, REPO_ROOT
from tests.docs.markdown import DOCS, SHELL_LANGS, Command, all_commands, blocks, inline_spans, split_words

SELF = ("make", "test")
"""`make test` runs this suite: running it from here would recurse."""
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND_WORDS = ("visual-search", "make", "python", "aws", "sam", "docker", "gdk", "git", "mosquitto_sub")
MAKE_VARS = {"CHAOS_ARGS": "simulator.chaos", "BENCH_ARGS": "bench"}
SERVICES = ("simulator.stack.http_server", "simulator.stack.bridge")
"""What `stack up` runs: docs may name their options (e.g. the HTTP server's --request-timeout)."""
DEFAULT_PORTS = (1883, 6379, 8080)


# --- what the commands accept -----------------------------------------------------------------------------
def _subcommand(words: list[str]) -> tuple[list[str], Parser]:
    """The innermost ``visual-search`` (sub)parser the leading words name, and those words."""
    parser = build_parser(words)
    path: list[str] = []
    for word in words:
        children = next(
            (a.choices for a in parser._actions if a.__class__.__name__ == "_SubParsersAction" and word in a.choices),
            None,
        )
        if children is None:
            break
        parser, path = children[word], [*path, word]
    return path, parser


def _options(parser: Parser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@functools.cache
def module_options(module: str, subcommand: tuple[str, ...] = ()) -> frozenset[str]:
    """``python -m module [subcommand] --help``'s options (the parser's own words, not ours)."""
    for args in ([*subcommand, "--help"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
        )
        if result.returncode == 0:
            return frozenset(OPTION.findall(result.stdout))
    raise AssertionError(f"python -m {module} --help failed:\n{result.stderr[-2000:]}")


def _python_module(words: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """``python -m X sub ...`` → (X, (sub,)); also ``.venv/bin/python -m``."""
    if len(words) >= 3 and words[0].endswith("python") and words[1] == "-m":
        rest = tuple(w for w in words[3:] if not w.startswith("-"))[:1]
        return words[2], rest
    return None


@functools.cache
def every_option() -> frozenset[str]:
    """All options of every command the docs use: what a lone ``--option`` in prose must be one of."""
    found: set[str] = set()
    for name in COMMANDS:
        found |= _tree_options(build_parser([name]))
    modules = {*MAKE_VARS.values(), *SERVICES}
    for path in DOCS:  # wherever a doc names one: prose, tables, code and its comments
        modules |= set(re.findall(r"python -m ([A-Za-z_][\w.]*)", path.read_text()))
    for module in modules:
        found |= module_options(module)
    return frozenset(found)


def _tree_options(parser: Parser) -> set[str]:
    found = _options(parser)
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for child in action.choices.values():
                found |= _tree_options(child)
    return found


# --- static checks ----------------------------------------------------------------------------------------
def test_every_block_that_shows_commands_is_a_shell_block() -> None:
    unlabelled = [
        f"{b.path.relative_to(REPO_ROOT)}:{b.line}"
        for path in DOCS
        for b in blocks(path)
        if b.lang not in SHELL_LANGS
        and any(line.split(" ", 1)[0] in COMMAND_WORDS for line in b.text.splitlines() if line.strip())
    ]
    assert unlabelled == [], "label these blocks ```bash so their commands are run or marked"


VISUAL_SEARCH = [c for c in all_commands() if c.words()[:1] == ["visual-search"]]


@pytest.mark.parametrize("command", VISUAL_SEARCH, ids=[c.where for c in VISUAL_SEARCH])
def test_visual_search_command_parses(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    words = command.words()[1:]
    try:
        build_parser(words).parse_args(words)
    except SystemExit:
        pytest.fail(f"{command.where}: `{command.text}` does not parse:\n{capsys.readouterr().err}")


def test_python_module_and_make_commands_name_real_options_and_targets() -> None:
    targets = set(re.findall(r"^([a-z][a-z0-9_-]*):", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE))
    problems = []
    for command in all_commands():
        words = command.words()
        parsed = _python_module(words)
        if parsed:
            unknown = set(OPTION.findall(command.text.split("#", 1)[0])) - module_options(*parsed)
            problems += [f"{command.where}: {option} not in `python -m {parsed[0]} --help`" for option in unknown]
        if words[:1] == ["make"] and words[1] not in targets:
            problems.append(f"{command.where}: no make target {words[1]!r}")
    assert problems == []


def _inline_problems(path: Path, line: int, span: str) -> list[str]:
    options = set(OPTION.findall(span))
    if not options:
        return []
    words = split_words(span)
    where = f"{path.relative_to(REPO_ROOT)}:{line}"
    if words and words[0] == "visual-search":
        words = words[1:]
    allowed: set[str] | frozenset[str]
    if words and words[0] in COMMANDS:
        subcommand, parser = _subcommand(words)
        allowed, what = _options(parser), f"visual-search {' '.join(subcommand)} --help"
    elif _python_module(words):
        module, sub = _python_module(words)  # type: ignore[misc]
        allowed, what = module_options(module, sub), f"python -m {module} --help"
    elif words and "=" in words[0] and words[0].split("=")[0] in MAKE_VARS:
        module = MAKE_VARS[words[0].split("=")[0]]
        allowed, what = module_options(module), f"python -m {module} --help"
    elif words and not words[0].startswith("-") and words[0] not in ("model", "catalog", "stack"):
        return []  # another program's options (sudo, greengrass-cli, aws ...)
    else:
        allowed, what = every_option(), "any visual-search command or documented module"
    return [f"{where}: `{span}`: {option} is not in {what}" for option in sorted(options - allowed)]


def test_every_option_mentioned_inline_exists() -> None:
    problems = [p for path in DOCS for line, span in inline_spans(path) for p in _inline_problems(path, line, span)]
    assert problems == []


def test_a_renamed_option_would_be_caught() -> None:
    """The check above can fail: a doc naming an option that no command has is reported."""
    assert _inline_problems(REPO_ROOT / "README.md", 1, "stack up --min-scor 0.5")
    assert _inline_problems(REPO_ROOT / "README.md", 1, "--no-such-option")
    assert not _inline_problems(REPO_ROOT / "README.md", 1, "stack up --min-score 0.5")


# --- running them -----------------------------------------------------------------------------------------
def run_plan() -> list[Command]:
    """Unmarked commands in doc order (README first), each distinct command once, `make test` left out."""
    seen: set[tuple[str, ...]] = set()
    plan = []
    for command in all_commands():
        key = tuple(command.words())
        if command.marker or key in seen or key == SELF:
            continue
        seen.add(key)
        plan.append(command)
    return plan


CTRL_C = """set -m   # job control: the job gets its own process group and, unlike a plain background job, SIGINT
{command} > .interrupted.log 2>&1 &
pid=$!
echo $pid > .interrupted.pid
set +m
for _ in $(seq 1 1500); do grep -q "frame-to-match" .interrupted.log && break; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
kill -INT -- -$pid 2>/dev/null   # Ctrl-C: SIGINT to the whole foreground process group
wait $pid; rc=$?
for _ in $(seq 1 100); do kill -0 -- -$pid 2>/dev/null || break; sleep 0.1; done
cat .interrupted.log
{{ [ $rc -eq 0 ] || [ $rc -eq 2 ] || [ $rc -eq 130 ]; }} && rc=0"""
"""`make demo` loops until Ctrl-C: run it until its first match, then press Ctrl-C (make reports 2 or 130)."""


def _default_interrupt() -> None:
    """The script's Ctrl-C must reach `make demo`. A runner started in the background (`nohup make test &`, a
    shell without job control) passes SIGINT on as ignored, and bash cannot undo an ignore it inherited
    (bash(1), SIGNALS), so the demo would never see Ctrl-C. Restore the default before bash starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def script(plan: list[Command]) -> str:
    lines = [
        "set -u",
        # Whatever way the script ends (a step fails, pytest is killed and the script runs on alone), nothing it
        # started keeps running: the stack recorded in .state/stack and an interrupted `make demo`.
        "trap '.venv/bin/visual-search stack down >/dev/null 2>&1;"
        " [ -f .interrupted.pid ] && kill -KILL -- -$(cat .interrupted.pid) 2>/dev/null; true' EXIT",
        'echo "### CMD 0 make demo ONCE=1"; SECONDS=0',
        "make demo ONCE=1",
        'rc=$?; echo "### RC 0 $rc ${SECONDS}s"; [ $rc -eq 0 ] || exit $rc',
    ]
    for number, command in enumerate(plan, start=1):
        lines.append(f"echo {json.dumps(f'### CMD {number} {command.where}')}; SECONDS=0")
        lines.append(
            CTRL_C.format(command="make demo") if command.words() == ["make", "demo"] else f"{command.raw}\nrc=$?"
        )
        lines.append(f'echo "### RC {number} $rc ${{SECONDS}}s"; [ $rc -eq 0 ] || exit $rc')
    return "\n".join(lines) + "\n"


def sections(output: str) -> dict[int, str]:
    parts = re.split(r"^### CMD (\d+)[^\n]*\n", output, flags=re.MULTILINE)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory, exported_models: dict[str, Path]) -> Path:
    """What a fresh clone has (tracked and new, not ignored files), the set-up `.venv`, the exported int8
    model and the 4-item sample (`python -m simulator.sample_data --size small`) where `make demo` looks."""
    copy = tmp_path_factory.mktemp("fresh-clone") / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    _require_current_venv()
    (copy / ".venv").symlink_to(REPO_ROOT / ".venv")
    models = copy / ".cache" / "models"
    models.mkdir(parents=True)
    for suffix in (".onnx", ".json"):
        shutil.copy2(exported_models["int8"].with_suffix(suffix), models)
    ensure_sample_data(copy / ".state" / "sample", size=SMALL)
    return copy


def _require_current_venv() -> None:
    """The copy shares this checkout's `.venv`: were its set-up stamp stale, `make demo` in the copy would
    reinstall the project editable from the temporary copy and leave this checkout's venv pointing there."""
    digest = hashlib.sha1(
        (REPO_ROOT / "pyproject.toml").read_bytes() + (REPO_ROOT / "requirements" / "constraints.txt").read_bytes()
    ).hexdigest()[:12]
    if not (REPO_ROOT / ".venv" / f".setup-{digest}").exists():
        pytest.fail(".venv is older than pyproject.toml or requirements/constraints.txt: run `make setup` first")


def _isolation(copy: Path) -> list[str]:
    """A private network namespace, so 1883/6379/8080 are free; else the host's, when they are free there."""
    helper = [sys.executable, str(Path(__file__).with_name("isolated_net.py"))]
    probe = subprocess.run([*helper, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode == 0:
        return helper
    for port in DEFAULT_PORTS:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"no private network namespace ({probe.stderr.strip()}) and port {port} is taken here")
    return []


@pytest.mark.slow
def test_every_command_runs_as_written(fresh_copy: Path) -> None:
    plan = run_plan()
    assert [c.words()[:3] for c in plan[:3]] == [
        ["make", "demo"],
        ["source", ".venv/bin/activate"],
        [
            "visual-search",
            "model",
            "export",
        ],
    ]
    (fresh_copy / "doc-commands.sh").write_text(script(plan))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "VS_PHOTO_MODEL")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    process = subprocess.Popen(
        [*_isolation(fresh_copy), "bash", "doc-commands.sh"],
        cwd=fresh_copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_default_interrupt,
    )
    try:
        stdout, _ = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, _ = process.communicate()
    finally:
        _stop_leftovers(fresh_copy)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "doc-commands.log").write_text(stdout)  # every step's output and seconds, for a failed CI run
    output = result.stdout
    ran = sections(output)
    failed = max(ran) if ran else 0
    assert result.returncode == 0, (
        f"`{plan[failed - 1].text if failed else 'make demo ONCE=1'}` failed:\n{ran.get(failed, output)[-4000:]}"
    )
    assert len(ran) == len(plan) + 1
    _check_outputs(plan, ran)


def _stop_leftovers(copy: Path) -> None:
    """Whatever a failed step left running (a stack, an interrupted demo) is stopped by its recorded pids."""
    from simulator.stack.manager import stack_down

    pid_file = copy / ".interrupted.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    stack_down(copy / ".state" / "stack")


def _check_outputs(plan: list[Command], ran: dict[int, str]) -> None:
    """What each step must have shown, beyond its exit status."""
    by_words = {tuple(c.words()[:3]): ran[n] for n, c in enumerate(plan, start=1)}
    demo = ran[0]
    assert "web app:   http://127.0.0.1:8080/" in demo and "-p 1883" in demo and "!! port" not in demo
    assert '"records": ' in demo and "stopping the stack" in demo
    interrupted = by_words[("make", "demo")]
    assert "frame-to-match" in interrupted and "stopping the stack" in interrupted
    # Right after the demo's stack went down (its ports in TIME_WAIT), `stack up` gets README's ports.
    up = by_words[("visual-search", "stack", "up")]
    assert "stack started" in up and "http://127.0.0.1:8080/" in up and "mqtt://127.0.0.1:1883" in up
    status = json.loads(by_words[("visual-search", "stack", "status")].split("### RC")[0])
    assert status["running"] is True
    assert re.search(r'"published": [1-9]', by_words[("visual-search", "simulate", "--video")])
    found = by_words[("visual-search", "search-image", ".state/sample/catalog/images/skimage-coffee.jpg")]
    assert re.search(r"^ 1\. \d\.\d+  skimage-coffee ", found, re.MULTILINE)
    form = json.loads(by_words[("curl", "-sS", "-F")].split("### RC")[0])  # a photo sent as curl -F sends it
    assert form["matches"][0]["id"] == "skimage-coffee"
    down = by_words[("visual-search", "stack", "down")]
    assert down.count("stopped") == 4

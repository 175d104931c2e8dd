"""``make mutation``: mutmut over the critical modules, each with its own targeted tests.

``python -m tests.mutation [NAME ...]`` (all when none is named). Each module is mutated in its own copy of the
tree under ``.mutation/<name>/`` (its own ``[tool.mutmut]``: the module, and the tests that specify it), at
``nice 15`` with one test process: the machine is shared. Prints one table row per module (mutants, killed,
survived, equivalent, score = killed / (killed + survived), timeouts counted as killed, equivalents left out)
and the survivors by name (``cd .mutation/<name> && mutmut show <survivor>`` prints the diff); writes
``test-artifacts/mutation.json``. A survivor is excused as equivalent only when it is listed in its module's
``equivalent`` with why, and its diff still shows the listed change (a renumbered mutant fails the run).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".mutation"
PACKAGES = ("model", "edge_component", "cloud_lambda", "simulator", "tests")
TARGET = 0.85


@dataclass(frozen=True)
class Equivalent:
    """A surviving mutant no test can kill because the program behaves the same: named, with why."""

    mutant: str
    """The name after the module path, e.g. ``x_loads__mutmut_11``."""
    change: str
    """Text in the mutant's changed lines (``mutmut show``, without +/- and indentation, joined by newlines),
    so a renumbered mutant is not excused."""
    why: str


@dataclass(frozen=True)
class Module:
    source: str
    tests: tuple[str, ...]
    """The targeted tests: the module's specification."""
    scope: tuple[str, ...] = ()
    """Mutant name patterns (fnmatch) when only part of the module is the subject: the bridge's ack/spool logic,
    the search service's validation. Empty: the whole module."""
    equivalent: tuple[Equivalent, ...] = field(default=())
    """Survivors judged equivalent: left out of the score, listed in the table's notes."""


CODEC_NAMES = "codec names are looked up case-insensitively (codecs.lookup): 'UTF-8' is 'utf-8'"

REDIS_PY_BYTES = "redis-py decodes replies only when decode_responses is truthy; its default is False"
REDIS_INF = "Redis parses score bounds with strtold: 'inf' in any case"
LOAD_SETS_END = "_load sets _end before anything reads it"
FLOAT64_DEFAULT = "astype(None) is float64, numpy's default float: the norm is computed in float64 either way"
INT8_RANGE = "the scale is max|v| / 127, so |v / scale| <= 127 already: the clip never cuts"
WORKER_NAMES = "the bridge names its spool folders worker-<n> (open_spool): one dash, so each split gives the same n"
ASCII_LINES = "json.dumps writes ASCII (ensure_ascii), so the file's encoding never matters"
RULED_TOPIC = (
    "only a message whose topic passed the rule gets here: at most 151 characters (a 128-character thing name)"
)
MQTT_TOPIC_TEXT = "paho hands topics as valid UTF-8 text (MQTT requires it): encoding one never needs an error handler"
ONE_SEARCH = "scores and positions are the two rows of one search result: always the same length"
SAME_LENGTH = "the four sequences zipped are built from one list of ids: always the same length"

OPENCV_NONE_INT = "OpenCV's Python bindings read None for an int argument as 0: Sobel's order 0 either way"

MODULES = {
    "wire": Module(
        "model/contracts/wire.py",
        # Not the fuzz tests (hypothesis, 150 examples each): they multiply the run time by ~10 and check that a
        # message is refused, not why, so they kill nothing the contract tests miss.
        (
            "tests/hardening/test_wire_contract.py",
            "tests/model/contracts/test_wire.py",
            "tests/model/contracts/test_wire_v2.py",  # version 2: region vectors
        ),
        equivalent=(
            *(
                Equivalent(name, change, CODEC_NAMES)
                for name, change in (
                    ("x_encode_vector__mutmut_18", '.decode("ASCII")'),
                    ("x_decode_vector__mutmut_24", 'text.encode("ASCII")'),
                    ("x_encode_regions__mutmut_15", '.decode("ASCII"), None'),
                    ("x_encode_regions__mutmut_61", '.decode("ASCII"), [float'),
                    ("x_decode_regions__mutmut_16", 'text.encode("ASCII")'),
                    ("x__envelope__mutmut_14", 'payload.encode("UTF-8", errors="surrogatepass")'),
                    ("x_encode__mutmut_58", '.encode("UTF-8")'),
                )
            ),
            Equivalent(
                "x__envelope__mutmut_11", 'payload.encode(errors="surrogatepass")', "str.encode's default is UTF-8"
            ),
            Equivalent("x_decode_vector__mutmut_63", "vector.astype(None)", FLOAT64_DEFAULT),
            Equivalent("x_decode_regions__mutmut_117", "rows.astype(None), axis=1", FLOAT64_DEFAULT),
            Equivalent("x_encode_regions__mutmut_50", "None, INT8_MAX)", INT8_RANGE),
            Equivalent("x_encode_regions__mutmut_51", "-INT8_MAX, None)", INT8_RANGE),
            *(
                Equivalent(name, change, "encode_vector and encode_regions convert to their own dtype first")
                for name, change in (
                    ("x__vector_fields__mutmut_5", "np.asarray(message.vector, dtype=None)"),
                    ("x__vector_fields__mutmut_7", "np.asarray(message.vector, ).reshape(-1)"),
                    ("x__vector_fields__mutmut_36", "np.asarray(message.regions, dtype=None)"),
                    ("x__vector_fields__mutmut_38", "np.asarray(message.regions, )"),
                )
            ),
            Equivalent(
                "x_encode__mutmut_50", "allow_nan=None", "json.dumps tests allow_nan for truth: None refuses NaN"
            ),
        ),
    ),
    "matches": Module(
        "cloud_lambda/matches.py",
        (
            "tests/hardening/test_match_store.py",
            "tests/hardening/test_device_keys.py",
            "tests/hardening/test_json_bounds.py",
        ),
        equivalent=(
            Equivalent("x_connect__mutmut_6", "decode_responses=None", REDIS_PY_BYTES),
            Equivalent("x_connect__mutmut_11", "decode_responses=False,\n)", REDIS_PY_BYTES),
            Equivalent("xǁMatchStoreǁdevices__mutmut_5", "with_records=None", "None is falsy like False: no records"),
            Equivalent("xǁMatchStoreǁpage__mutmut_12", '"+INF"', REDIS_INF),
            Equivalent("xǁMatchStoreǁpage__mutmut_28", '"+INF"', REDIS_INF),
            Equivalent("xǁMatchStoreǁput_status__mutmut_21", '"-INF"', REDIS_INF),
            Equivalent(
                "xǁMatchStoreǁpage__mutmut_36",
                "if (ids) or True else []",
                "redis-py answers MGET of no keys with [] (its EMPTY_RESPONSE option): the guard only spares a call",
            ),
            Equivalent("xǁMatchStoreǁpage__mutmut_42", "transaction=None", "None is falsy like False: no MULTI"),
            Equivalent(
                "xǁMatchStoreǁpage__mutmut_43",
                "transaction=True",
                "the same reads inside MULTI/EXEC give the same values; False only spares the server the wrapping",
            ),
            Equivalent("xǁMatchStoreǁpage__mutmut_57", "strict=None", SAME_LENGTH),
            Equivalent("xǁMatchStoreǁpage__mutmut_62", "zip(seen, ids, statuses, latest, ):", SAME_LENGTH),
            Equivalent("xǁMatchStoreǁpage__mutmut_63", "strict=False", SAME_LENGTH),
            Equivalent(
                "xǁMatchStoreǁpush__mutmut_10",
                "allow_nan=None",
                "json.dumps tests allow_nan for truth: None refuses NaN like False",
            ),
            Equivalent(
                "xǁMatchStoreǁpush__mutmut_29",
                "or 1.0)",
                "a record without searched_at registers its device at 0.0 or 1.0 s after the epoch: either is older than "
                "any device TTL, so the device is pruned at once either way",
            ),
        ),
    ),
    "bridge": Module(
        "simulator/stack/bridge.py",
        ("tests/hardening/test_bridge_acks.py", "tests/simulator/test_bridge.py"),
        tuple(
            f"*{name}__mutmut_*"
            for name in (
                ".x_rule_event",
                ".x_open_spool",
                ".x_check_leftover_spools",
                ".x__worker_index",
                ".x_write_dead_letter",
                "ǁMemorySpoolǁ",
                "ǁReplayScheduleǁ",
                "ǁRuleBridgeǁhandle",
                "ǁRuleBridgeǁ_settle",
                "ǁRuleBridgeǁ_failed",
                "ǁRuleBridgeǁ_on_message",
                "ǁRuleBridgeǁ_work",
                "ǁRuleBridgeǁ_replay",
                "ǁRuleBridgeǁ_ack",
                "ǁRuleBridgeǁspool_depth",
            )
        ),
        equivalent=(
            *(
                Equivalent(f"x__worker_index__mutmut_{n}", change, WORKER_NAMES)
                for n, change in ((5, 'rsplit("-", )'), (6, 'split("-", 1)'), (8, 'rsplit("-", 2)'), (9, "[+1]"))
            ),
            Equivalent(
                "x__worker_index__mutmut_15", "2 << 30", "any index of 2**30 or more is past every worker count"
            ),
            Equivalent(
                "x__worker_index__mutmut_16", "1 << 31", "any index of 2**30 or more is past every worker count"
            ),
            *(
                Equivalent(f"x_write_dead_letter__mutmut_{n}", change, ASCII_LINES)
                for n, change in ((21, "encoding=None"), (24, '"a", )'), (29, 'encoding="UTF-8"'))
            ),
            Equivalent("xǁRuleBridgeǁ_failed__mutmut_16", "topic=topic[:201]", RULED_TOPIC),
            Equivalent("xǁRuleBridgeǁ_failed__mutmut_39", "topic=topic[:201]", RULED_TOPIC),
            Equivalent("xǁRuleBridgeǁ_work__mutmut_47", "topic=topic[:201]", RULED_TOPIC),
            Equivalent("xǁRuleBridgeǁ_work__mutmut_62", "topic=topic[:201]", RULED_TOPIC),
            Equivalent("xǁRuleBridgeǁ_failed__mutmut_19", "settled=None", "None is falsy like False"),
            Equivalent("xǁRuleBridgeǁ_replay__mutmut_3", "retry=None", "None is falsy like False"),
            *(
                Equivalent(f"xǁRuleBridgeǁ_on_message__mutmut_{n}", change, MQTT_TOPIC_TEXT)
                for n, change in (
                    (19, 'encode("utf-8", )'),
                    (21, '"UTF-8", "replace"'),
                    (22, "XXreplaceXX"),
                    (23, "REPLACE"),
                )
            ),
            Equivalent(
                "xǁRuleBridgeǁ_work__mutmut_4",
                "if len(spool) or schedule.due",
                "a spool is empty only once a replay drained it, and then the schedule is already reset: replaying "
                "an empty spool does nothing",
            ),
        ),
    ),
    "spool": Module(
        "simulator/stack/spool.py",
        ("tests/simulator/test_spool.py",),
        equivalent=(
            Equivalent("xǁSpoolǁ__init____mutmut_26", "self._end = None", LOAD_SETS_END),
            Equivalent("xǁSpoolǁ__init____mutmut_27", "self._end = 1", LOAD_SETS_END),
            Equivalent("xǁSpoolǁ_load__mutmut_10", "while offset <= size", "a read at the end is torn: the loop stops"),
            Equivalent(
                "xǁSpoolǁ_load__mutmut_17", "if offset <= size", "truncating to the size it has changes nothing"
            ),
            Equivalent("xǁSpoolǁ_read_at__mutmut_15", 'decode("UTF-8")', CODEC_NAMES),
            Equivalent("xǁSpoolǁappend__mutmut_4", 'encode("UTF-8")', CODEC_NAMES),
            Equivalent(
                "xǁSpoolǁ_write_head__mutmut_4", '".TMP"', "the temporary file's name: it is renamed over the head"
            ),
            Equivalent("xǁSpoolǁ_read_head__mutmut_9", "raw[:9]", "the head file holds 8 bytes"),
            Equivalent(
                "xǁSpoolǁ_write_head__mutmut_16",
                "to_bytes(9",
                "a 9th little-endian byte is the zero high byte; the reader reads the first 8",
            ),
        ),
    ),
    "service": Module(
        "cloud_lambda/search/service.py",
        (
            "tests/hardening/test_service_validation.py",
            "tests/cloud_lambda/test_search_service.py",
            "tests/hardening/test_lower_items.py",
            "tests/hardening/test_record_size.py",
            "tests/hardening/test_json_bounds.py",
            "tests/cloud_lambda/test_multiview_catalog.py",
            # An adapted catalog: the service projects each message with the catalog's head.
            "tests/cloud_lambda/test_adaptation.py::test_the_search_service_projects_device_messages_through_an_adapted_catalogs_head",
            # A message is searched in its own model's index, not the newest one.
            "tests/cloud_lambda/test_model_routing.py::test_each_model_id_searches_its_own_index",
        ),
        tuple(
            f"*{name}__mutmut_*"
            for name in (
                "ǁSearchServiceǁhandle_feature_event",
                "ǁSearchServiceǁhandle_feature_payload",
                "ǁSearchServiceǁ_handle",
                "ǁSearchServiceǁ_check_capture_time",
                "ǁSearchServiceǁ_fit",
                "ǁSearchServiceǁ_match_fields",
                "ǁSearchServiceǁ_reject",
                "ǁSearchServiceǁhandle_status_event",
                "ǁSearchServiceǁfind",
                ".x__size",
            )
        ),
        equivalent=(
            Equivalent(
                "xǁSearchServiceǁ_check_capture_time__mutmut_7",
                "ahead = ts >= now",
                "reached only for a ts outside [now - ttl, now + 300 s], which is never now",
            ),
            Equivalent("xǁSearchServiceǁhandle_status_event__mutmut_43", 'decode("UTF-8")', CODEC_NAMES),
            Equivalent(
                "xǁSearchServiceǁhandle_status_event__mutmut_58",
                "message=str(exc)[:301]",
                "no status refusal message reaches 300 characters (parse_status quotes at most 120 of the input)",
            ),
            Equivalent("xǁSearchServiceǁfind__mutmut_28", "strict=None", ONE_SEARCH),
            Equivalent("xǁSearchServiceǁfind__mutmut_31", "zip(scores[0], items[0], )", ONE_SEARCH),
            Equivalent("xǁSearchServiceǁfind__mutmut_34", "strict=False", ONE_SEARCH),
        ),
    ),
    "bounded_json": Module(
        "model/contracts/bounded_json.py",
        ("tests/hardening/test_json_bounds.py",),
        equivalent=(
            Equivalent("x_loads__mutmut_11", '"UTF-8", "surrogatepass"', CODEC_NAMES),
            Equivalent("x_loads__mutmut_25", 'raw.decode("UTF-8")', CODEC_NAMES),
        ),
    ),
    "thing_name": Module("model/contracts/thing_name.py", ("tests/hardening/test_thing_names.py",)),
    "frame_crop": Module(
        "model/retrieval/frame_crop.py",
        ("tests/model/test_frame_crop.py", "tests/edge_component/test_blank_crop.py"),
        equivalent=(
            Equivalent("x_edge_fraction__mutmut_19", "cv2.CV_32F, 1, None)", OPENCV_NONE_INT),
            Equivalent("x_edge_fraction__mutmut_28", "cv2.CV_32F, None, 1)", OPENCV_NONE_INT),
        ),
    ),
}


def prepare(name: str, module: Module) -> Path:
    """A fresh copy of the tree whose pyproject mutates ``module`` only, with its tests."""
    root = WORK / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    write_config(root, module)
    return root


def write_config(root: Path, module: Module) -> None:
    """The tree's pyproject: the project's, plus a ``[tool.mutmut]`` for ``module`` and its tests."""
    tests = [t for t in module.tests if (REPO / t.split("::")[0]).exists()]
    config = {
        "source_paths": [module.source.split("/")[0]],
        "only_mutate": [module.source],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-m", "not gpu", "--timeout", "300"],
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    text = (REPO / "pyproject.toml").read_text() + "\n[tool.mutmut]\n" + "\n".join(lines) + "\n"
    (root / "pyproject.toml").write_text(text)


def run(name: str, module: Module, children: int = 1, survivors_only: bool = False) -> dict[str, object]:
    if not survivors_only:
        root = prepare(name, module)
        mutmut_run(root, module.scope, children, "wb")
        return tally(root, module, kept(root, statuses(root, module)))
    # Only tests were added since the full run: a killed mutant stays killed, so only the survivors are retried.
    # mutmut forgets every result when its configuration (the test list) changes: the earlier ones are kept in
    # KEPT beside the tree, so a second --survivors run still starts from the full run's results.
    root = WORK / name
    before = json.loads((root / KEPT).read_text()) if (root / KEPT).is_file() else statuses(root, module)
    refresh_tests(name, module)
    survivors = [n for n, state in before.items() if state == "survived"]
    if survivors:
        mutmut_run(root, tuple(survivors), children, "ab")
    now = statuses(root, module)
    merged = {n: now[n] if now.get(n, "not checked") != "not checked" else state for n, state in before.items()}
    return tally(root, module, kept(root, merged))


KEPT = "kept-results.json"


def kept(root: Path, status: dict[str, str]) -> dict[str, str]:
    """``status`` written to ``root/KEPT`` (the results the next --survivors run starts from), returned."""
    (root / KEPT).write_text(json.dumps(status, indent=0, sort_keys=True))
    return status


def mutmut_run(root: Path, names: tuple[str, ...], children: int, mode: str) -> None:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    with open(root / "mutmut.log", mode) as out:
        command = ["nice", "-n", "15", mutmut, "run", "--max-children", str(children), *names]
        subprocess.run(command, cwd=root, stdout=out, stderr=out)


def refresh_tests(name: str, module: Module) -> Path:
    """The last full run's tree with today's tests; refused when the module itself changed since that run."""
    root = WORK / name
    if (
        not (root / module.source).is_file()
        or (root / module.source).read_bytes() != (REPO / module.source).read_bytes()
    ):
        raise SystemExit(f"{module.source} changed since the last full run of {name}: run it without --survivors")
    shutil.rmtree(root / "tests")
    shutil.copytree(REPO / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    write_config(root, module)
    return root


def statuses(root: Path, module: Module) -> dict[str, str]:
    """{mutant: state} from ``mutmut results --all true``, limited to the module's scope."""
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    listing = subprocess.run([mutmut, "results", "--all", "true"], cwd=root, capture_output=True, text=True).stdout
    status: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep and (not module.scope or any(fnmatch.fnmatch(name, p) for p in module.scope)):
            status[name] = state
    return status


def tally(root: Path, module: Module, status: dict[str, str] | None = None) -> dict[str, object]:
    """Counts of ``status`` (default: :func:`statuses`); listed equivalents apart."""
    status = statuses(root, module) if status is None else status
    killed = sum(1 for s in status.values() if s in ("killed", "timeout"))
    survived = sorted(n for n, s in status.items() if s == "survived")
    equivalent, stale = equivalents(root, module, survived)
    survived = [n for n in survived if n not in equivalent]
    checked = killed + len(survived)
    return {
        "module": module.source + (" (scoped)" if module.scope else ""),
        "tests": [t for t in module.tests if (REPO / t.split("::")[0]).exists()],
        "mutants": len(status),
        "killed": killed,
        "survived": len(survived),
        "equivalent": equivalent,
        "stale_equivalents": stale,
        "no_tests": sum(1 for s in status.values() if s == "no tests"),
        "score": round(killed / checked, 3) if checked else None,
        "survivors": survived,
    }


def equivalents(root: Path, module: Module, survived: list[str]) -> tuple[dict[str, str], list[str]]:
    """({survivor: why} for the listed equivalents whose diff still shows their change, [listed ones that do not])."""
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    prefix = module.source.removesuffix(".py").replace("/", ".") + "."
    found: dict[str, str] = {}
    stale: list[str] = []
    for listed in module.equivalent:
        name = prefix + listed.mutant
        diff = subprocess.run([mutmut, "show", name], cwd=root, capture_output=True, text=True).stdout
        changed = "\n".join(
            line[1:].strip() for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
        )
        if name in survived and listed.change in changed:
            found[name] = listed.why
        else:
            stale.append(listed.mutant)
    return found, stale


def below_target(row: dict[str, object]) -> bool:
    score = row["score"]
    return (isinstance(score, float) and score < TARGET) or bool(row["stale_equivalents"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"modules (default: all): {', '.join(MODULES)}")
    parser.add_argument("--children", type=int, default=1, help="test processes at once (the machine is shared)")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="retry only the last full run's survivors with today's tests (refused if the module changed)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    names = args.names or list(MODULES)
    rows = [run(name, MODULES[name], args.children, args.survivors) | {"name": name} for name in names]
    print("\n| module | mutants | killed | survived | equivalent | no tests | score |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        score = f"{row['score']:.1%}" if row["score"] is not None else "-"
        print(
            f"| {row['module']} | {row['mutants']} | {row['killed']} | {row['survived']} "
            f"| {len(row['equivalent'])} | {row['no_tests']} | {score} |"  # type: ignore[arg-type]
        )
    for row in rows:
        for survivor in row["survivors"]:  # type: ignore[attr-defined]
            print(f"  survived: {survivor}")
        for name, why in row["equivalent"].items():  # type: ignore[attr-defined]
            print(f"  equivalent: {name}: {why}")
        for name in row["stale_equivalents"]:  # type: ignore[attr-defined]
            print(f"  listed as equivalent but not a survivor showing its change (renumbered?): {name}")
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    previous = json.loads((out / "mutation.json").read_text()) if (out / "mutation.json").exists() else {}
    (out / "mutation.json").write_text(json.dumps(previous | {row["name"]: row for row in rows}, indent=2))
    low = [row["name"] for row in rows if below_target(row)]
    if low:
        print(f"below {TARGET:.0%} or with a stale equivalent: {', '.join(map(str, low))}")
    return 1 if low else 0


if __name__ == "__main__":
    raise SystemExit(main())
